"""The Python tool's sandbox: each escape it must block, tried for real."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from memory_agent.tools import ToolContext, python_sandbox
from memory_agent.tools.python_sandbox import PythonTool, run_python


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def run(
    code: str, workspace: Path, timeout_s: float = 10, memory_mb: int = 512
) -> tuple[bool, str]:
    result = PythonTool().run(
        {"code": code}, ToolContext(workspace=workspace, timeout_s=timeout_s, memory_mb=memory_mb)
    )
    return result.ok, result.output


def test_ordinary_code_runs_and_shows_the_last_expression(workspace: Path) -> None:
    assert run("bin(987).count('1')", workspace) == (True, "8")
    assert run("'memory'[::-1]", workspace) == (True, "yromem")
    assert run("import numpy\nprint(int(numpy.arange(5).sum()))", workspace) == (True, "10")
    assert run("open('notes.txt', 'w').write('kept')\nopen('notes.txt').read()", workspace) == (
        True, "kept",
    )  # fmt: skip
    assert (workspace / "notes.txt").read_text() == "kept"


def test_network_is_blocked(workspace: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        server.settimeout(5)
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        ok, output = run(
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')",
            workspace,
        )
        raw_ok, raw = run(
            f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))", workspace
        )
    finally:
        thread.join()
        server.close()
    assert not ok and "connected" not in output
    assert not raw_ok
    assert accepted == []  # the listener never saw a connection


def test_writing_outside_the_workspace_is_blocked(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    # Each escape must be refused by the sandbox's audit hook, by name: any other error (a
    # typo in the snippet, a missing file) would also fail the run without proving anything.
    for code, refusal in (
        (f"open({str(outside)!r}, 'w').write('x')", f"writing {outside} (outside"),
        (f"import os\nfd = os.open({str(outside)!r}, os.O_CREAT | os.O_WRONLY)",
         f"writing {outside} (outside"),
        ("open('../outside.txt', 'a').write('x')", "writing ../outside.txt (outside"),
        (f"import pathlib\npathlib.Path({str(outside)!r}).write_text('x')",
         f"writing {outside} (outside"),
        ("import os\nos.symlink('/etc', 'etc')\nopen('etc/evil', 'w')",
         "writing etc/evil (outside"),
        (f"import shutil\nshutil.copyfile('/etc/hostname', {str(outside)!r})",
         f"shutil.copyfile on {outside} (outside"),
    ):  # fmt: skip
        ok, output = run(code, workspace)
        assert not ok, code
        assert f"PermissionError: sandbox: {refusal}" in output, (code, output)
    assert not outside.exists()


def test_removing_a_file_outside_the_workspace_is_blocked(workspace: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    ok, output = run(f"import os\nos.remove({str(victim)!r})", workspace)
    assert not ok
    assert f"PermissionError: sandbox: os.remove on {victim} (outside the workspace)" in output
    assert victim.read_text() == "still here"
    # The same call inside the workspace works: the refusal is about the place, not the call.
    (workspace / "scratch.txt").write_text("x")
    assert run("import os\nos.remove('scratch.txt')", workspace)[0] is True
    assert not (workspace / "scratch.txt").exists()


def test_fork_bombs_and_subprocesses_are_refused(workspace: Path) -> None:
    for code in (
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.run(['sh', '-c', ':(){ :|:& };:'])",
        "import os\nos.system('echo hi')",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        "import ctypes\nctypes.CDLL(None).fork()",
    ):
        started = time.perf_counter()
        ok, output = run(code, workspace)
        assert not ok, code
        assert "not allowed" in output, output
        assert time.perf_counter() - started < 10


def test_memory_hog_hits_the_limit(workspace: Path) -> None:
    ok, output = run("x = bytearray(3 * 1024 ** 3)\nprint(len(x))", workspace, memory_mb=512)
    assert not ok and "MemoryError" in output


def test_runaway_loop_is_killed_at_the_timeout(workspace: Path) -> None:
    started = time.perf_counter()
    ok, output = run("while True:\n    pass", workspace, timeout_s=1.5)
    assert not ok and ("timed out" in output or "CPU time limit" in output)
    assert time.perf_counter() - started < 6
    sleeper = run_python("import time\ntime.sleep(60)", workspace, timeout_s=1, memory_mb=256)
    assert sleeper.timed_out and sleeper.elapsed_s < 5


def test_task_functions_can_be_pickled(workspace: Path) -> None:
    # The task's namespace is a real `__main__` module, as in a script or a REPL.
    code = "import pickle\ndef f():\n    return 5\npickle.loads(pickle.dumps(f))()"
    assert run(code, workspace) == (True, "5")


def test_syntax_errors_are_reported(workspace: Path) -> None:
    ok, output = run("def (:", workspace)
    assert not ok and "SyntaxError" in output


def test_code_runs_inside_bubblewrap(workspace: Path) -> None:
    if not python_sandbox.bwrap_available():
        pytest.skip(f"bubblewrap cannot run here: {python_sandbox.bwrap_problem()}")
    result = PythonTool().run(
        {"code": "import os\nprint(os.getuid(), os.getcwd(), sorted(os.listdir('/proc'))[:2])"},
        ToolContext(workspace=workspace),
    )
    assert result.ok and result.data["isolated"] is True
    assert result.output == "65534 /workspace ['1', '2']"  # nobody, in its own PID namespace


def test_without_bubblewrap_the_tool_refuses_and_says_how_to_enable_it(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(python_sandbox, "bwrap_problem", lambda: "/usr/bin/bwrap is missing")
    result = PythonTool().run({"code": "open('ran', 'w')"}, ToolContext(workspace=workspace))
    assert not result.ok and result.data["refused"] is True
    assert result.output.startswith("Error: the python tool runs code only inside a bubblewrap")
    assert "/usr/bin/bwrap is missing" in result.output
    assert "apt-get install bubblewrap" in result.output
    assert "user namespaces" in result.output
    assert "MEMORY_AGENT_SANDBOX_ALLOW_UNISOLATED=1" in result.output
    assert not (workspace / "ran").exists()
    # The loudly named setting allows the weaker mode (rlimits and the audit hook only).
    weak = PythonTool().run(
        {"code": "6 * 7"}, ToolContext(workspace=workspace, allow_unisolated=True)
    )
    assert weak.ok and weak.output == "42" and weak.data["isolated"] is False


def test_the_unisolated_mode_is_a_setting_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from memory_agent.settings import RuntimeSettings, Settings

    field = RuntimeSettings.model_fields["sandbox_allow_unisolated"]
    assert field.default is False
    assert "UNSAFE" in (field.description or "")
    monkeypatch.setenv("MEMORY_AGENT_SANDBOX_ALLOW_UNISOLATED", "1")
    assert Settings().runtime.sandbox_allow_unisolated is True


def test_a_fork_bomb_is_stopped_with_a_clear_message(workspace: Path) -> None:
    run = python_sandbox.run_python(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        workspace,
        timeout_s=2,
        memory_mb=256,
        audit_hook=False,
    )
    failure = python_sandbox.describe_failure(run, 2) or ""
    if run.too_many_processes:  # the watchdog (root is exempt from RLIMIT_NPROC)
        assert failure.startswith("too many processes (more than 64); the sandbox was killed")
        assert run.elapsed_s < 1.9
    else:  # RLIMIT_NPROC held the forks back; the loop spun until the time-out
        assert "timed out" in failure


def test_python_installed_under_tmp_stays_visible_inside(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CI clones and builds its venv wherever it runs, /tmp included; the sandbox's private
    # /tmp must not hide a read-only bind of the interpreter's folders that lives under it.
    packages = tmp_path / "site"
    packages.mkdir()
    (packages / "marker_module.py").write_text("VALUE = 'seen inside'\n")
    roots = python_sandbox._python_roots()
    monkeypatch.setattr(python_sandbox, "_python_roots", lambda: [*roots, str(packages)])
    code = f'open({str(packages / "marker_module.py")!r}).read().split("\'")[1]'
    assert run(code, workspace) == (True, "seen inside")
