"""Hostile code against the Python tool's sandbox: each known escape, tried for real.

The sandbox has two layers: OS isolation (bubblewrap namespaces, a read-only minimal root,
rlimits) and, on top, an audit hook in the child. The hook is a convenience, not a boundary,
so most tests here first knock it out (as task code could) and, where the sandbox supports it,
run without it at all: what must hold is the OS layer. Every test asserts the concrete
outcome (the file is unchanged, the secret is absent, the listener accepted nothing), not
merely that the run failed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memory_agent.tools import ToolContext, python_sandbox
from memory_agent.tools.python_sandbox import PythonTool, SandboxRun, run_python

# What task code can do to the audit hook of the old child: its block lists are globals of
# the `__main__` module. Harmless (and a no-op) against a child that keeps them elsewhere.
UNHOOK = """\
import sys as _sys
_main = _sys.modules.get('__main__')
for _name in ('_BLOCKED', '_PATH_WRITES'):
    try:
        getattr(_main, _name).clear()
    except Exception:
        pass
"""

if not python_sandbox.bwrap_available() and not os.environ.get("CI"):
    pytest.skip("bubblewrap cannot run here", allow_module_level=True)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def hostile(
    code: str, workspace: Path, *, timeout_s: float = 5, memory_mb: int = 512
) -> SandboxRun:
    """Run `code` without the audit hook, after knocking it out the way task code could: the
    OS isolation alone must hold."""
    return run_python(
        UNHOOK + code, workspace, timeout_s=timeout_s, memory_mb=memory_mb, audit_hook=False
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Listener:
    """A TCP listener on the host's loopback that records every connection it accepts."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.accepted: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, address = self.server.accept()
            except OSError:
                continue
            self.accepted.append(address)
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.close()


def test_memory_database_outside_the_workspace_cannot_be_modified(
    workspace: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    db = home / "memory.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE cases (id INTEGER PRIMARY KEY, answer TEXT)")
        conn.execute("INSERT INTO cases (answer) VALUES ('the true answer')")
    conn.close()
    before = digest(db)
    # No audit-hook trickery needed: sqlite3.connect raised no event the old hook refused.
    run = run_python(
        f"import sqlite3\nc = sqlite3.connect({str(db)!r})\n"
        "c.execute(\"UPDATE cases SET answer = 'poisoned'\")\n"
        "c.execute(\"INSERT INTO cases (answer) VALUES ('planted')\")\nc.commit()\nprint('done')",
        workspace,
        timeout_s=5,
        memory_mb=512,
    )
    assert "done" not in run.stdout
    assert digest(db) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT answer FROM cases").fetchall() == [("the true answer",)]
    conn.close()


def test_clearing_the_audit_hook_then_os_system_changes_nothing_outside(
    workspace: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-by-system"
    # Through the tool as the agent calls it (audit hook in place), then without the hook.
    context = ToolContext(workspace=workspace, timeout_s=5, memory_mb=512)
    code = f"import os\nos.system('echo pwned > {marker}')"
    result = PythonTool().run({"code": UNHOOK + code}, context)
    assert not marker.exists(), result.output
    hostile(code, workspace)
    assert not marker.exists()


def test_clearing_the_audit_hook_then_spawning_a_process_changes_nothing_outside(
    workspace: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-by-spawn"
    hostile(
        f"import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'echo pwned > {marker}'], {{}})\n"
        "import time\ntime.sleep(0.5)",
        workspace,
    )
    hostile(f"import subprocess\nsubprocess.run(['sh', '-c', 'echo pwned > {marker}'])", workspace)
    assert not marker.exists()


def test_clearing_the_audit_hook_then_fork_changes_nothing_outside(
    workspace: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-by-fork"
    hostile(
        "import os, sqlite3\nif os.fork() == 0:\n"
        f"    sqlite3.connect({str(marker)!r}).execute('CREATE TABLE pwned (x)')\n"
        "    os._exit(0)\nos.wait()",
        workspace,
    )
    assert not marker.exists()


def test_ctypes_setns_cannot_reach_a_listener_on_the_host_loopback(workspace: Path) -> None:
    listener = Listener()
    try:
        run = hostile(
            "import ctypes, os, socket\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"for pid in (1, {os.getpid()}, os.getppid()):\n"
            "    try:\n"
            "        fd = os.open(f'/proc/{pid}/ns/net', os.O_RDONLY)\n"
            "    except OSError:\n"
            "        continue\n"
            "    print(pid, libc.setns(fd, 0x40000000), ctypes.get_errno())\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.1', {listener.port}), timeout=1)\n"
            "        print('connected')\n"
            "    except OSError as exc:\n"
            "        print('refused', exc)\n",
            workspace,
        )
        time.sleep(0.3)
    finally:
        listener.close()
    assert "connected" not in run.stdout, run.stdout
    assert listener.accepted == []


def test_plain_network_cannot_reach_a_listener_on_the_host_loopback(workspace: Path) -> None:
    listener = Listener()
    try:
        run = hostile(
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {listener.port}), timeout=1)\n"
            "print('connected')",
            workspace,
        )
        time.sleep(0.3)
    finally:
        listener.close()
    assert "connected" not in run.stdout
    assert listener.accepted == []


def test_etc_shadow_is_not_readable(workspace: Path) -> None:
    run = hostile(
        "import os\nfor path in ('/etc/shadow', '/etc/gshadow', '/etc/passwd'):\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as exc:\n"
        "        print('no', path, type(exc).__name__)\n"
        "try:\n"
        "    print('private keys', os.listdir('/etc/ssl/private'))\n"
        "except OSError as exc:\n"
        "    print('no /etc/ssl/private', type(exc).__name__)",
        workspace,
    )
    assert "root:" not in run.stdout, run.stdout
    assert "no /etc/shadow" in run.stdout
    assert "no /etc/ssl/private" in run.stdout


def test_files_outside_the_workspace_are_not_readable(workspace: Path, tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    outside = tmp_path / "private.txt"
    outside.write_text(f"secret {token}")
    run = hostile(
        f"print(open({str(outside)!r}).read())\nimport os\nprint(os.listdir({str(tmp_path)!r}))",
        workspace,
    )
    assert token not in run.stdout
    assert "private.txt" not in run.stdout


def test_a_symlink_out_of_the_workspace_leads_nowhere(workspace: Path, tmp_path: Path) -> None:
    token = secrets.token_hex(16)
    outside = tmp_path / "outside.txt"
    outside.write_text(f"secret {token}")
    before = digest(outside)
    run = hostile(
        f"import os\nos.symlink({str(outside)!r}, 'link')\nos.symlink({str(tmp_path)!r}, 'dir')\n"
        "try:\n    print(open('link').read())\nexcept OSError as exc:\n    print('read', exc)\n"
        "try:\n    open('link', 'w').write('clobbered')\nexcept OSError as exc:\n"
        "    print('write', exc)\n"
        "fd = os.open('dir', os.O_RDONLY)\n"
        "os.write(os.open('planted.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd), b'x')",
        workspace,
    )
    assert token not in run.stdout
    assert digest(outside) == before
    assert not (tmp_path / "planted.txt").exists()


def test_dir_fd_writes_cannot_leave_the_workspace(workspace: Path, tmp_path: Path) -> None:
    # No audit-hook trickery: the old hook resolved the name against the workspace.
    run = run_python(
        f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
        "out = os.open('escaped.txt', os.O_CREAT | os.O_WRONLY, dir_fd=fd)\n"
        "os.write(out, b'outside')\nprint('written')",
        workspace,
        timeout_s=5,
        memory_mb=512,
    )
    assert not (tmp_path / "escaped.txt").exists(), run.stdout


def test_the_parents_environment_is_not_readable(workspace: Path) -> None:
    token = "MA_SECRET_" + secrets.token_hex(16)
    # The sandbox is started by a process holding the secret in its environment (as the agent
    # holds API keys); the code reads every environ it can find.
    script = (
        f"import sys; sys.path[:0] = {sys.path!r}\n"
        "from pathlib import Path\n"
        "from memory_agent.tools.python_sandbox import run_python\n"
        "code = '''\nimport os\nprint([k for k in os.environ if 'API_KEY' in k])\n"
        "for entry in os.listdir('/proc'):\n"
        "    try:\n"
        "        found = open(f'/proc/{entry}/environ', 'rb').read().split(bytes(1))\n"
        "    except OSError:\n"
        "        continue\n"
        "    print(entry, [v for v in found if b'API_KEY' in v])\n"
        "'''\n"
        f"run = run_python(code, Path({str(workspace)!r}), timeout_s=5, memory_mb=512)\n"
        "print(run.stdout)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "OPENAI_API_KEY": token},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "environ" not in done.stderr
    assert token not in done.stdout
    # /proc/1 is the sandbox's own init, not the host's.
    assert "OPENAI_API_KEY" not in done.stdout


def test_a_double_forked_setsid_grandchild_dies_at_the_timeout(workspace: Path) -> None:
    started = time.perf_counter()
    run = hostile(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(2.5)\n"
        "        open('grandchild-alive', 'w').write(str(os.getpid()))\n"
        "    os._exit(0)\n"
        "time.sleep(60)",
        workspace,
        timeout_s=1,
    )
    assert run.timed_out
    assert time.perf_counter() - started < 5
    time.sleep(max(0.0, 3.5 - (time.perf_counter() - started)))
    assert not (workspace / "grandchild-alive").exists()


def test_a_fork_bomb_is_capped_and_dies_at_the_timeout(workspace: Path) -> None:
    started = time.perf_counter()
    run = hostile(
        "import os, sys, time\nforked = 0\n"
        "for i in range(400):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(2.5)\n"
        "        open(f'alive-{i}', 'w').close()\n"
        "        os._exit(0)\n"
        "    forked += 1\n"
        "print('forked', forked, flush=True)\ntime.sleep(60)",
        workspace,
        timeout_s=1.5,
    )
    # Either RLIMIT_NPROC stopped the forks (an ordinary user) or, for root, which the kernel
    # exempts from it, the watchdog killed the sandbox at the process limit.
    if getattr(run, "too_many_processes", False):
        assert not run.timed_out and time.perf_counter() - started < 1.5
    else:
        assert "forked" in run.stdout, run.stderr
        assert int(run.stdout.split()[1]) < 400
    time.sleep(max(0.0, 4 - (time.perf_counter() - started)))
    assert list(workspace.glob("alive-*")) == []


def test_memory_exhaustion_is_refused(workspace: Path) -> None:
    run = hostile(
        "chunks = []\nfor _ in range(64):\n    chunks.append(bytearray(256 * 1024 ** 2))\n"
        "print('allocated', len(chunks))",
        workspace,
        memory_mb=512,
    )
    assert "allocated" not in run.stdout
    assert "MemoryError" in run.stderr


def test_filling_the_disk_stops_at_the_file_size_limit(workspace: Path) -> None:
    run = hostile(
        "block = b'x' * (1024 ** 2)\nwith open('big.bin', 'wb') as f:\n"
        "    for _ in range(200):\n        f.write(block)\nprint('wrote 200 MB')",
        workspace,
    )
    assert "wrote 200 MB" not in run.stdout
    assert (workspace / "big.bin").stat().st_size <= 64 * 1024**2


def test_host_processes_cannot_be_signalled(workspace: Path) -> None:
    victim = subprocess.Popen(["sleep", "30"])
    try:
        hostile(
            f"import os, signal\ntry:\n    os.kill({victim.pid}, signal.SIGKILL)\n"
            "except OSError as exc:\n    print(exc)",
            workspace,
        )
        time.sleep(0.2)
        assert victim.poll() is None  # still running
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait()


def test_the_root_filesystem_is_read_only(workspace: Path, tmp_path: Path) -> None:
    run = hostile(
        "import os\nfor path in ('/etc/planted', '/usr/planted', '/planted'):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_CREAT | os.O_WRONLY))\n"
        "        print('planted', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.strerror)",
        workspace,
    )
    assert "planted /" not in run.stdout
    for path in ("/etc/planted", "/usr/planted", "/planted"):
        assert not Path(path).exists()


def test_unix_sockets_on_the_host_are_unreachable(workspace: Path, tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    path = tmp_path / "agent.sock"
    servers = []
    for address in (str(path), f"\0memory-agent-test-{token}"):  # a file and an abstract name
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        server.listen(1)
        server.setblocking(False)
        servers.append(server)
    try:
        run = hostile(
            "import socket\n"
            f"for address in ({str(path)!r}, '\\0memory-agent-test-{token}'):\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    try:\n"
            "        s.connect(address)\n"
            "        print('connected', repr(address))\n"
            "    except OSError as exc:\n"
            "        print('refused', exc)",
            workspace,
        )
        accepted = 0
        for server in servers:
            try:
                server.accept()[0].close()
                accepted += 1
            except BlockingIOError:
                pass
    finally:
        for server in servers:
            server.close()
    assert "connected" not in run.stdout, run.stdout
    assert accepted == 0


def test_tmp_is_a_small_private_tmpfs(workspace: Path) -> None:
    token = secrets.token_hex(8)
    run = hostile(
        "import os\nblock = b'x' * (1024 ** 2)\nwritten = 0\n"
        f"try:\n    with open('/tmp/fill-{token}', 'wb') as f:\n"
        "        for _ in range(128):\n            f.write(block)\n            written += 1\n"
        "            f.flush()\n"
        "except OSError as exc:\n    print('stopped', exc.strerror)\nprint('written', written)",
        workspace,
    )
    assert "stopped" in run.stdout, run.stdout + run.stderr
    assert int(run.stdout.split("written")[1]) <= 64
    assert not Path(f"/tmp/fill-{token}").exists()  # the host's /tmp never saw it


# System calls the seccomp filter denies, as (name, number, arguments). Arguments are chosen
# so that without the filter the kernel gets past its permission checks for the first group
# (keyctl returns a keyring id, process_vm_readv reads nothing, the others fail on their
# arguments): that they fail with EPERM inside the sandbox is the filter's doing.
ALLOWED_BY_THE_KERNEL = [
    ("keyctl", 250, (0, -3, 0)),  # KEYCTL_GET_KEYRING_ID of the session keyring
    ("add_key", 248, (0, 0, 0, 0, 0)),
    ("bpf", 321, (0, 0, 0)),
    ("perf_event_open", 298, (0, 0, -1, -1, 0)),
    ("process_vm_readv", 310, (1, 0, 0, 0, 0, 0)),
    ("ptrace", 101, (3, 1, 0, 0)),  # PTRACE_PEEKUSER on the sandbox's init
]
# Denied by the filter and, for an unprivileged uid, also by the kernel: the filter makes it
# two walls. (clone is called with a namespace flag: without any denial it would fork.)
ALSO_DENIED = [
    ("unshare(CLONE_NEWUSER)", 272, (0x10000000,)),
    ("unshare(CLONE_NEWNET)", 272, (0x40000000,)),
    ("setns", 308, (0, 0x40000000)),
    ("mount", 165, (0, 0, 0, 0, 0)),
    ("clone(CLONE_NEWUSER)", 56, (0x10000000 | 17, 0, 0, 0, 0)),
    ("clone(CLONE_NEWNET)", 56, (0x40000000 | 17, 0, 0, 0, 0)),
    ("userfaultfd", 323, (0,)),
    ("init_module", 175, (0, 0, 0)),
]
SYSCALLS = """\
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
out = {}
for name, number, args in CALLS:
    ctypes.set_errno(0)
    result = libc.syscall(number, *[ctypes.c_long(a) for a in args])
    out[name] = [result, errno.errorcode.get(ctypes.get_errno())]
print(json.dumps(out))
"""


def _syscalls(
    workspace: Path, calls: list[tuple[str, int, tuple[int, ...]]]
) -> dict[str, list[object]]:
    import json

    run = hostile(f"CALLS = {calls!r}\n" + SYSCALLS, workspace)
    assert run.returncode == 0, run.stderr
    result: dict[str, list[object]] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


needs_x86_64 = pytest.mark.skipif(
    os.uname().machine != "x86_64", reason="the seccomp filter is built for x86-64"
)


@needs_x86_64
def test_the_seccomp_filter_is_in_force(workspace: Path) -> None:
    run = hostile("print(open('/proc/self/status').read())", workspace)
    fields = dict(line.split(":", 1) for line in run.stdout.splitlines() if ":" in line)
    assert fields["Seccomp"].strip() == "2"  # SECCOMP_MODE_FILTER
    assert int(fields["Seccomp_filters"]) >= 1


@needs_x86_64
def test_kernel_attack_surface_syscalls_fail_with_eperm(workspace: Path) -> None:
    results = _syscalls(workspace, ALLOWED_BY_THE_KERNEL + ALSO_DENIED)
    assert results == {name: [-1, "EPERM"] for name, _, _ in ALLOWED_BY_THE_KERNEL + ALSO_DENIED}


@needs_x86_64
def test_without_the_filter_those_syscalls_get_past_the_kernel(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the EPERMs above come from the filter, not from elsewhere."""
    from memory_agent.tools import sandbox_seccomp

    monkeypatch.setattr(sandbox_seccomp, "program", lambda: None)
    results = _syscalls(workspace, ALLOWED_BY_THE_KERNEL)
    assert all(errno_name != "EPERM" for _, errno_name in results.values()), results
    assert int(results["keyctl"][0]) > 0  # a keyring id: the call went through


@needs_x86_64
def test_clone3_is_refused_but_threads_and_fork_still_work(workspace: Path) -> None:
    run = hostile(
        "import ctypes, errno, os, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.syscall(435, ctypes.c_long(0), ctypes.c_long(0)),"
        " errno.errorcode[ctypes.get_errno()])\n"
        "seen = []\nt = threading.Thread(target=lambda: seen.append(1))\nt.start()\nt.join()\n"
        "pid = os.fork()\nif pid == 0:\n    os._exit(7)\n"
        "print(seen, os.waitpid(pid, 0)[1] >> 8)",
        workspace,
    )
    assert run.stdout.split() == ["-1", "ENOSYS", "[1]", "7"], run.stderr


def test_filling_the_disk_with_many_files_is_stopped_at_the_workspace_cap(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file stays under the 64 MB file-size limit; together they would fill the disk."""
    monkeypatch.setattr(python_sandbox, "WORKSPACE_GROWTH_BYTES", 32 * 2**20)
    (workspace / "attachment.bin").write_bytes(os.urandom(2**20))  # there before: not counted
    run = hostile(
        "import os\nblock = os.urandom(1 << 20)\ni = 0\nwhile True:\n"
        "    with open(f'fill{i}', 'wb') as f:\n"
        "        for _ in range(8):\n            f.write(block)\n    i += 1",
        workspace,
        timeout_s=20,
    )
    used, _entries = python_sandbox.workspace_usage(workspace, 10**6)
    assert run.disk_full and not run.timed_out, run
    assert run.elapsed_s < 10
    # Killed past the cap, plus what it wrote between two looks of the watchdog (0.1 s and
    # the look itself): into the page cache that is up to ~3 GB/s here, so 257 MB over the cap
    # was seen once (a full-suite run, 2026-12-03). Without the cap it would have written for
    # 20 s: many gigabytes.
    assert 33 * 2**20 < used < (1 + 32 + 768) * 2**20, used
    assert "workspace grew past its limit" in (python_sandbox.describe_failure(run, 20) or "")


def test_an_inode_flood_is_stopped_at_the_workspace_cap(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(python_sandbox, "WORKSPACE_MAX_ENTRIES", 2000)
    run = hostile(
        "import os\nos.mkdir('d')\ni = 0\nwhile True:\n    open(f'd/{i}', 'w').close()\n    i += 1",
        workspace,
        timeout_s=20,
    )
    _used, entries = python_sandbox.workspace_usage(workspace, 10**7)
    assert run.disk_full and not run.timed_out, run
    assert 2000 < entries < 50_000, entries


# Four processes of 200 MB each: every one is under the per-process address-space limit
# (512 MB), together they hold 800 MB.
MEMORY_HOGS = """\
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(200 * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(1)
        os._exit(0)
    kids.append(pid)
print("held 200 MB:", sum(os.waitpid(pid, 0)[1] == 0 for pid in kids))
"""


def _leftover_cgroups() -> list[str]:
    from memory_agent.tools.sandbox_cgroup import _ROOT

    return [str(p) for p in _ROOT.glob("*/**/memory-agent-sandbox-*")]


def test_processes_together_cannot_exceed_the_sandbox_memory(workspace: Path) -> None:
    run = hostile(MEMORY_HOGS, workspace, timeout_s=20, memory_mb=512)
    if not run.memory_cgroup:
        pytest.skip("no writable cgroup hierarchy here: only the per-process RLIMIT_AS holds")
    # The kernel's OOM killer, inside the sandbox's cgroup, stopped some of them.
    held = int(run.stdout.split(":")[1]) if "held" in run.stdout else 0
    assert held < 4, run
    assert _leftover_cgroups() == []


def test_without_the_cgroup_those_processes_would_hold_800_mb(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: what stops them above is the cgroup."""
    import contextlib

    monkeypatch.setattr(python_sandbox, "sandbox_cgroup", lambda *_a: contextlib.nullcontext())
    run = hostile(MEMORY_HOGS, workspace, timeout_s=20, memory_mb=512)
    assert not run.memory_cgroup
    assert run.stdout.strip() == "held 200 MB: 4", run
