"""Python execution in a limited subprocess: the agent's main tool.

Layers: rlimits (CPU seconds, address space, file size) set by the child on itself; an audit
hook in the child refusing processes, sockets, ctypes and writes outside the workspace; a
private network namespace (`unshare -n`) when the system allows one; a wall-clock timeout
that kills the whole process group.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory_agent.tools.base import ToolContext, ToolResult

_CHILD = Path(__file__).with_name("sandbox_child.py")
_MAX_OUTPUT = 16_000


@dataclass(frozen=True, slots=True)
class SandboxRun:
    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool
    elapsed_s: float
    network_isolated: bool


@functools.cache
def network_namespace_available() -> bool:
    """Whether `unshare -n` works here (needs root or user namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        done = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_OUTPUT else text[:_MAX_OUTPUT] + "\n…[output truncated]"


def run_python(code: str, workspace: Path, *, timeout_s: float, memory_mb: int) -> SandboxRun:
    """Run `code` in the sandbox with `workspace` as its only writable place."""
    workspace.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-I", "-B", str(_CHILD), str(workspace.resolve()),
        str(max(1, math.ceil(timeout_s))), str(memory_mb * 1024 * 1024),
    ]  # fmt: skip
    isolated = network_namespace_available()
    if isolated:
        command = [shutil.which("unshare") or "unshare", "-n", *command]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workspace),
        "TMPDIR": str(workspace),
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workspace,
        env=env,
        start_new_session=True,  # its own process group, so a timeout kills everything
    )
    timed_out = False
    try:
        out, err = process.communicate(code.encode("utf-8"), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = process.communicate()
    return SandboxRun(
        stdout=_clip(out.decode("utf-8", "replace")),
        stderr=_clip(err.decode("utf-8", "replace")),
        returncode=process.returncode,
        timed_out=timed_out,
        elapsed_s=time.perf_counter() - started,
        network_isolated=isolated,
    )


def describe_failure(run: SandboxRun, timeout_s: float) -> str | None:
    """None when the run succeeded, else a one-paragraph reason for the model."""
    if run.timed_out:
        return f"timed out after {timeout_s:g} s (killed)"
    if run.returncode == 0:
        return None
    if run.returncode is not None and run.returncode < 0:
        name = signal.Signals(-run.returncode).name
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
        run = run_python(
            code, context.workspace, timeout_s=context.timeout_s, memory_mb=context.memory_mb
        )
        failure = describe_failure(run, context.timeout_s)
        data = {
            "returncode": run.returncode,
            "timed_out": run.timed_out,
            "elapsed_s": round(run.elapsed_s, 4),
            "network_isolated": run.network_isolated,
        }
        if failure is not None:
            output = (run.stdout.strip() + "\n" if run.stdout.strip() else "") + "Error: " + failure
            return ToolResult(False, output, data)
        return ToolResult(True, run.stdout.rstrip("\n"), data)
