"""A memory (and process) limit on the python tool's sandbox as a whole: a cgroup.

RLIMIT_AS limits each process's address space, so N processes may together use N times the
budget. A cgroup limits them together: every process of the sandbox is charged to it, and
past the limit the kernel's OOM killer kills inside it, never outside. It needs a writable
cgroup hierarchy, which an ordinary user usually lacks (systemd delegates one only to user
services); then `sandbox_cgroup` yields None and the per-process rlimits are what holds.

Supported: cgroup v1 (`memory` and `pids` hierarchies, as on this project's CI VM) and v2
(where the memory controller is enabled for the agent's own cgroup's children). The group
is made under the agent's own cgroup, named memory-agent-sandbox-<random>, and removed
after the run.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _number, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            out[controller] = path
    return out


def _v1_folders(own: dict[str, str], name: str) -> dict[str, Path] | None:
    if "memory" not in own or not (_ROOT / "memory" / "memory.limit_in_bytes").exists():
        return None
    folders = {"memory": _ROOT / "memory" / own["memory"].lstrip("/") / name}
    if "pids" in own and (_ROOT / "pids").is_dir():
        folders["pids"] = _ROOT / "pids" / own["pids"].lstrip("/") / name
    return folders


def _v2_folder(own: dict[str, str], name: str) -> Path | None:
    if "" not in own or not (_ROOT / "cgroup.controllers").exists():
        return None
    parent = _ROOT / own[""].lstrip("/")
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return parent / name if "memory" in enabled else None


@contextlib.contextmanager
def sandbox_cgroup(memory_bytes: int, max_processes: int) -> Iterator[list[Path] | None]:
    """A fresh cgroup limited to `memory_bytes` (no swap beyond it) and `max_processes`;
    yields the `cgroup.procs` files a process joins it through, or None where no cgroup
    can be made here. The group is removed afterwards (its processes must be gone)."""
    name = f"memory-agent-sandbox-{uuid.uuid4().hex[:12]}"
    own = _own_cgroups()
    made: list[Path] = []
    try:
        v1 = _v1_folders(own, name)
        v2 = None if v1 else _v2_folder(own, name)
        settings: list[tuple[Path, str]] = []
        if v1 is not None:
            memory = v1["memory"]
            settings += [(memory / "memory.limit_in_bytes", str(memory_bytes)),
                         (memory / "memory.memsw.limit_in_bytes", str(memory_bytes))]  # fmt: skip
            if "pids" in v1:
                settings.append((v1["pids"] / "pids.max", str(max_processes)))
            folders = list(v1.values())
        elif v2 is not None:
            settings += [(v2 / "memory.max", str(memory_bytes)), (v2 / "memory.swap.max", "0"),
                         (v2 / "pids.max", str(max_processes))]  # fmt: skip
            folders = [v2]
        else:
            yield None
            return
        for folder in folders:
            folder.mkdir()
            made.append(folder)
        for path, value in settings:
            if path.exists():  # memsw / swap files exist only with swap accounting
                path.write_text(value)
    except OSError:
        # Not ours to change (an unprivileged user, a read-only hierarchy): no cgroup.
        _remove(made)
        yield None
        return
    try:
        yield [folder / "cgroup.procs" for folder in made]
    finally:
        _remove(made)


def _remove(folders: list[Path]) -> None:
    # The sandbox's last processes may take a moment to be reaped after the kill.
    deadline = time.monotonic() + 2.0
    for folder in reversed(folders):
        while True:
            try:
                os.rmdir(folder)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)


def join_command(procs: list[Path], command: list[str]) -> list[str]:
    """`command`, started through a shell that first moves itself into the cgroup (the
    `cgroup.procs` files), so bwrap and everything it starts are in it from the first
    instruction; `exec` keeps the same process id."""
    joins = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(procs)))
    script = f'{joins} && shift {len(procs)} && exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *map(str, procs), *command]
