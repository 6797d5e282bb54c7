"""Python execution in an OS sandbox: the agent's main tool.

The boundary is bubblewrap (`bwrap`): the code runs as `nobody` in new user, PID, network,
mount, IPC, UTS and cgroup namespaces, on a read-only root holding only what Python needs
(/usr, the interpreter's prefix, the venv), with a fresh /proc (its own PID namespace, so no
other process's environment is visible), a minimal /dev, a small tmpfs /tmp and the task's
workspace as the only writable place (mounted at /workspace). The child sets rlimits on
itself (CPU seconds, address space, file size, processes), and at the time-out the whole
PID namespace is killed, double-forked `setsid` grandchildren included. A seccomp filter
(sandbox_seccomp.py) denies the system calls that only attack the kernel or the namespaces;
where a cgroup can be made (sandbox_cgroup.py) all the sandbox's processes share one memory
and task limit; a watchdog caps how much a run may add to the workspace as a whole.

On top of that the child installs an audit hook refusing processes, sockets, ctypes and
writes outside the workspace. It is a second layer giving clear messages, not the boundary:
task code can get round it, and the namespaces must hold without it.

Where bwrap cannot run the tool refuses, saying how to enable it, unless the setting
`sandbox_allow_unisolated` (unsafe) allows the old, weaker mode: rlimits, the audit hook and
`unshare -n` when available.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_agent.errors import DependencyMissingError
from memory_agent.tools.base import ToolContext, ToolResult
from memory_agent.tools.sandbox_cgroup import join_command, sandbox_cgroup

_CHILD = Path(__file__).with_name("sandbox_child.py")
_MAX_OUTPUT = 16_000
BWRAP = "/usr/bin/bwrap"
WORKSPACE = "/workspace"  # where the task's workspace appears inside the sandbox
_CHILD_INSIDE = "/sandbox/sandbox_child.py"
_TMP_BYTES = 64 * 1024 * 1024
# Processes allowed in one sandbox (its init included). The child's RLIMIT_NPROC enforces it
# where the sandbox maps to an ordinary user; for root (exempt from RLIMIT_NPROC) a watchdog
# counting the sandbox's PID namespace every _WATCH_S seconds kills a fork bomb.
MAX_PROCESSES = 64
_WATCH_S = 0.05
# The cgroup's task limit counts threads and bwrap's own two processes too.
_CGROUP_EXTRA_TASKS = 8
# The workspace as a whole (RLIMIT_FSIZE caps each file at 64 MB, not their number): a run may
# make it at most WORKSPACE_GROWTH_BYTES bigger than it was at the start, and hold at most
# WORKSPACE_MAX_ENTRIES more files and folders (an inode flood fills a disk too). A watchdog
# measures it every _DISK_WATCH_S and kills the sandbox past either; between two looks the
# code can write at most what the disk takes in that time, so the cap can be overshot by
# that much (tens of MB), never without bound. (A size-limited tmpfs would be exact, but
# the workspace must persist on the host between calls and for the agent to read.)
WORKSPACE_GROWTH_BYTES = 256 * 1024 * 1024
WORKSPACE_MAX_ENTRIES = 20_000
_DISK_WATCH_S = 0.1
# Files of /etc that programs may read; never passwd/shadow, /etc/ssl/private and the like.
# Bind nothing root-only: when the agent runs as root, the sandbox's uid maps to root outside,
# so inside it owns root's files (read-only binds keep them unwritable, not unreadable).
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "mime.types", "ssl/openssl.cnf")
_ETC_DIRS = ("ld.so.conf.d", "ssl/certs", "alternatives")
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}

HOW_TO_ENABLE = (
    "the python tool runs code only inside a bubblewrap sandbox, and bubblewrap cannot run "
    "here ({reason}). To enable it: install it (`apt-get install bubblewrap`, which provides "
    f"{BWRAP}) and allow unprivileged user namespaces (`sysctl -w "
    "kernel.unprivileged_userns_clone=1` where that exists; on Ubuntu 24.04+ also "
    "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; in a container, a seccomp "
    "profile that permits user namespaces). Running model-written code without isolation is "
    "unsafe; if you accept that, set MEMORY_AGENT_SANDBOX_ALLOW_UNISOLATED=1."
)


class SandboxUnavailableError(DependencyMissingError):
    """bubblewrap cannot run here and the unisolated mode is not allowed."""


@dataclass(frozen=True, slots=True)
class SandboxRun:
    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    elapsed_s: float
    network_isolated: bool
    isolated: bool = False  # ran inside bubblewrap
    too_many_processes: bool = False  # killed by the process-count watchdog
    memory_cgroup: bool = False  # its processes shared one memory limit (a cgroup)
    disk_full: bool = False  # killed by the workspace-size watchdog


def _python_roots() -> list[str]:
    """Folders the interpreter, its standard library and installed packages live in."""
    paths = {
        sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
        os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
        *site.getsitepackages(),
        *(p for p in (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib",
                                                              "purelib", "platlib")) if p),
    }  # fmt: skip
    roots = sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)} | set(paths))
    kept: list[str] = []
    for root in roots:  # drop folders already inside another (a bind covers them)
        if os.path.isdir(root) and not any(root.startswith(k + os.sep) for k in kept):
            kept.append(root)
    return kept


def bwrap_command(
    workspace: Path, python_args: list[str], seccomp_fd: int | None = None
) -> list[str]:
    """The bubblewrap command line running `python -I -B *python_args` in `workspace`; with
    `seccomp_fd`, bwrap loads the seccomp program readable there (sandbox_seccomp.py)."""
    command = [
        BWRAP,
        "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
        "--disable-userns",  # no nested user namespaces (and so no regaining capabilities)
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--hostname", "sandbox",
        # The private /tmp comes before every bind: a bind under /tmp (a venv or checkout
        # there, as in CI's clean clones) made earlier would be hidden by the tmpfs.
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(_TMP_BYTES), "--tmpfs", "/tmp",
        "--ro-bind", "/usr", "/usr",
    ]  # fmt: skip
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            command += ["--ro-bind", str(path), str(path)]
    for name in _ETC_FILES + _ETC_DIRS:
        path = Path("/etc") / name
        if path.exists():
            command += ["--ro-bind", str(path), str(path)]
    for root in _python_roots():
        if not root.startswith(("/usr/", "/bin/", "/lib")):
            command += ["--ro-bind", root, root]
    command += [
        "--ro-bind", str(_CHILD), _CHILD_INSIDE,
        "--bind", str(workspace), WORKSPACE,
        "--remount-ro", "/",
        "--chdir", WORKSPACE,
        "--clearenv",
    ]  # fmt: skip
    for key, value in _ENV.items():
        command += ["--setenv", key, value]
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
    # sys.executable, not its target: a venv's python finds its site-packages by its path.
    return [*command, "--", sys.executable, "-I", "-B", *python_args]


@functools.cache
def bwrap_problem() -> str | None:
    """None when the bubblewrap sandbox works here, else why not."""
    if not os.access(BWRAP, os.X_OK):
        return f"{BWRAP} is not installed"
    probe = Path("/tmp") if os.path.isdir("/tmp") else Path.cwd()
    with _seccomp_program() as fd:
        command = bwrap_command(probe, ["-c", "import encodings, _socket"], fd)
        try:
            done = subprocess.run(
                command, capture_output=True, timeout=20, pass_fds=() if fd is None else (fd,)
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{BWRAP} failed to start: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{BWRAP} failed: {reason[-1] if reason else f'exit status {done.returncode}'}"
    return None


@contextlib.contextmanager
def _seccomp_program() -> Iterator[int | None]:
    """A descriptor bwrap reads the seccomp program from (a pipe holding all of it), or None
    where there is no filter for this architecture."""
    from memory_agent.tools.sandbox_seccomp import program

    code = program()
    if code is None:
        yield None
        return
    read, write = os.pipe()
    try:
        os.write(write, code)  # a few hundred bytes: far below a pipe's buffer
        os.close(write)
        write = -1
        yield read
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def bwrap_available() -> bool:
    return bwrap_problem() is None


@functools.cache
def network_namespace_available() -> bool:
    """Whether `unshare -n` works here (needs root or user namespaces): unisolated mode only."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        done = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _count_sandbox_processes(bwrap_pid: int) -> int:
    """How many processes live in the PID namespace of bwrap's init (0 if not started)."""
    try:
        children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
        if not children:
            return 0
        namespace = os.readlink(f"/proc/{children[0]}/ns/pid")
        if namespace == os.readlink("/proc/self/ns/pid"):
            return 0  # bwrap has not entered its namespace yet
    except OSError:
        return 0
    count = 0
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                try:
                    count += os.readlink(f"/proc/{entry.name}/ns/pid") == namespace
                except OSError:
                    pass
    return count


def workspace_usage(workspace: Path, max_entries: int) -> tuple[int, int]:
    """(bytes allocated on disk, entries) under `workspace`, not following symlinks; stops
    counting entries past `max_entries` (the caller only needs to know it is over)."""
    total = entries = 0
    stack = [str(workspace)]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as scan:
                for entry in scan:
                    entries += 1
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed meanwhile
                    total += info.st_blocks * 512  # allocated, so sparse files count true
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except OSError:
            continue
    return total, entries


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_OUTPUT else text[:_MAX_OUTPUT] + "\n…[output truncated]"


def run_python(
    code: str,
    workspace: Path,
    *,
    timeout_s: float,
    memory_mb: int,
    allow_unisolated: bool = False,
    audit_hook: bool = True,
) -> SandboxRun:
    """Run `code` in the sandbox with `workspace` as its only writable place.

    Raises SandboxUnavailableError when bubblewrap cannot run and `allow_unisolated` is off.
    `audit_hook=False` leaves out the in-process second layer (for tests of the OS layer).
    """
    workspace.mkdir(parents=True, exist_ok=True)
    workspace = workspace.resolve()
    limits = [str(max(1, math.ceil(timeout_s))), str(memory_mb * 1024 * 1024)]
    hook = [] if audit_hook else ["--no-audit-hook"]
    problem = bwrap_problem()
    env: dict[str, str] | None = None
    seccomp: contextlib.AbstractContextManager[int | None] = contextlib.nullcontext(None)
    cgroup: contextlib.AbstractContextManager[list[Path] | None] = contextlib.nullcontext(None)
    command: list[str] = []
    if problem is None:
        seccomp = _seccomp_program()
        cgroup = sandbox_cgroup(memory_mb * 1024 * 1024, MAX_PROCESSES + _CGROUP_EXTRA_TASKS)
        isolated = network_isolated = True
        env = {}
    elif allow_unisolated:
        command = [sys.executable, "-I", "-B", str(_CHILD), str(workspace), *limits, *hook]
        network_isolated = network_namespace_available()
        isolated = False
        if network_isolated:
            command = [shutil.which("unshare") or "unshare", "-n", *command]
        env = {**_ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        env.update(HOME=str(workspace), TMPDIR=str(workspace))
    else:
        raise SandboxUnavailableError(HOW_TO_ENABLE.format(reason=problem))
    with cgroup as procs:
        run = _run(code, workspace, command, env, seccomp, procs, timeout_s, isolated,
                   limits + hook)  # fmt: skip
    return dataclasses.replace(run, network_isolated=network_isolated, memory_cgroup=bool(procs))


def _run(
    code: str,
    workspace: Path,
    command: list[str],
    env: dict[str, str] | None,
    seccomp: contextlib.AbstractContextManager[int | None],
    procs: list[Path] | None,
    timeout_s: float,
    isolated: bool,
    child_args: list[str],
) -> SandboxRun:
    """Start the sandbox (joining the cgroup `procs` if any), feed it `code`, watch it."""
    started = time.perf_counter()
    with seccomp as seccomp_fd:
        if isolated:
            command = bwrap_command(workspace, [_CHILD_INSIDE, WORKSPACE, *child_args],
                                    seccomp_fd)  # fmt: skip
            if procs:
                command = join_command(procs, command)
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workspace,
            env=env,
            start_new_session=True,  # its own process group, so a timeout kills everything
            pass_fds=() if seccomp_fd is None else (seccomp_fd,),
        )
    timed_out = too_many = disk_full = False
    deadline = started + timeout_s
    start_bytes, start_entries = workspace_usage(workspace, 10**9)
    disk_cap = start_bytes + WORKSPACE_GROWTH_BYTES
    entry_cap = start_entries + WORKSPACE_MAX_ENTRIES
    next_disk_look = started + _DISK_WATCH_S
    stdin: bytes | None = code.encode("utf-8")
    while True:
        # Short waits: between them the watchdog counts the sandbox's processes.
        wait = min(_WATCH_S, deadline - time.perf_counter()) if isolated else timeout_s
        try:
            out, err = process.communicate(stdin, timeout=max(0.0, wait))
            break
        except subprocess.TimeoutExpired:
            stdin = None
        too_many = isolated and _count_sandbox_processes(process.pid) > MAX_PROCESSES
        if isolated and time.perf_counter() >= next_disk_look:
            used, entries = workspace_usage(workspace, entry_cap)
            disk_full = used > disk_cap or entries > entry_cap
            next_disk_look = time.perf_counter() + _DISK_WATCH_S
        timed_out = time.perf_counter() >= deadline
        if too_many or disk_full or timed_out:
            # Killing bwrap kills its init in the sandbox (--die-with-parent), and the kernel
            # then kills every process of that PID namespace, whatever its session or group.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = process.communicate()
            break
    returncode = process.returncode
    if isolated and returncode is not None and 128 < returncode < 128 + 65:
        returncode = 128 - returncode  # bwrap reports a child killed by signal N as 128 + N
    return SandboxRun(
        stdout=_clip(out.decode("utf-8", "replace")),
        stderr=_clip(err.decode("utf-8", "replace")),
        returncode=returncode,
        timed_out=timed_out and not (too_many or disk_full),
        elapsed_s=time.perf_counter() - started,
        network_isolated=False,
        isolated=isolated,
        too_many_processes=too_many,
        disk_full=disk_full and not too_many,
    )


def describe_failure(run: SandboxRun, timeout_s: float) -> str | None:
    """None when the run succeeded, else a one-paragraph reason for the model."""
    if run.too_many_processes:
        return (
            f"too many processes (more than {MAX_PROCESSES}); the sandbox was killed. "
            "Run the work in one process."
        )
    if run.disk_full:
        return (
            f"the workspace grew past its limit ({WORKSPACE_GROWTH_BYTES // 2**20} MB more per "
            f"run, at most {WORKSPACE_MAX_ENTRIES:,} files); the sandbox was killed. Write less, "
            "or delete what is no longer needed."
        )
    if run.timed_out:
        return f"timed out after {timeout_s:g} s (killed)"
    if run.returncode == 0:
        return None
    if run.returncode is not None and run.returncode < 0:
        try:
            name = signal.Signals(-run.returncode).name
        except ValueError:
            name = f"signal {-run.returncode}"
        # The child's CPU limit is the same time budget (rounded up to whole seconds); for a
        # busy loop on an idle machine the kernel enforces it (SIGXCPU, then SIGKILL at the
        # hard limit) a moment before the wall clock does. Either way the budget ran out.
        if name == "SIGXCPU" or (name == "SIGKILL" and run.elapsed_s >= 0.9 * math.ceil(timeout_s)):
            return f"timed out after {timeout_s:g} s (CPU time limit)"
        return f"killed by {name}; {run.stderr.strip()[-800:]}".strip("; ")
    tail = run.stderr.strip().splitlines()
    return "\n".join(tail[-6:]) or f"exit status {run.returncode}"


class PythonTool:
    name = "python"
    description = (
        "Runs Python 3 code in a sandbox (no network, writes only in the task workspace, "
        "attached files are in ./files). Print what you need; a final bare expression is shown."
    )
    parameters = {"code": "the Python source"}

    def run(self, args: Mapping[str, Any], context: ToolContext) -> ToolResult:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            return ToolResult(False, 'python needs {"code": "..."}')
        try:
            run = run_python(
                code,
                context.workspace,
                timeout_s=context.timeout_s,
                memory_mb=context.memory_mb,
                allow_unisolated=context.allow_unisolated,
            )
        except SandboxUnavailableError as exc:
            return ToolResult(False, f"Error: {exc}", {"isolated": False, "refused": True})
        failure = describe_failure(run, context.timeout_s)
        data = {
            "returncode": run.returncode,
            "timed_out": run.timed_out,
            "elapsed_s": round(run.elapsed_s, 4),
            "network_isolated": run.network_isolated,
            "isolated": run.isolated,
        }
        if failure is not None:
            output = (run.stdout.strip() + "\n" if run.stdout.strip() else "") + "Error: " + failure
            return ToolResult(False, output, data)
        return ToolResult(True, run.stdout.rstrip("\n"), data)
