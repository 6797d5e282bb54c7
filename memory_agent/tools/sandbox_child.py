"""Runs inside the sandbox, as `python -I -B sandbox_child.py WS CPU MEM [--no-audit-hook]`.

It limits itself (rlimits, hard and soft, so the task cannot raise them: CPU, address space,
file size, processes), then installs an audit hook that refuses process creation, sockets,
native-library loading and any write outside the workspace, and only then runs the task's
code from stdin. The hook is a second layer with clear messages; the boundary is the
bubblewrap sandbox around this process (python_sandbox.py), which must hold without it.
A final bare expression is printed, as in a REPL, so `bin(7).count('1')` answers `3`.

This file must stay importable on its own: it runs with -I (no site customisation).
"""

import ast
import os
import resource
import sys
import types

_MAX_PROCESSES = 64  # per sandbox (threads count too): stops fork bombs
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_BLOCKED = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.posix_spawnp",
    "os.kill", "os.killpg", "os.chroot", "os.setuid", "os.setgid",
    "subprocess.Popen", "pty.spawn",
    "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata",
    "resource.setrlimit", "resource.prlimit",
})  # fmt: skip
# Events whose listed argument positions are paths that would be written.
_PATH_WRITES = {
    "os.mkdir": (0,), "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1),
    "os.symlink": (1,), "os.link": (1,), "os.chmod": (0,), "os.chown": (0,),
    "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
    "shutil.copytree": (1,), "shutil.chown": (0,), "os.chflags": (0,), "os.mknod": (0,),
}  # fmt: skip


def _limit(kind: int, value: int) -> None:
    resource.setrlimit(kind, (value, value))


def main() -> None:
    workspace = os.path.realpath(sys.argv[1])
    cpu_seconds, memory_bytes = int(sys.argv[2]), int(sys.argv[3])
    _limit(resource.RLIMIT_CPU, cpu_seconds)
    _limit(resource.RLIMIT_AS, memory_bytes)
    _limit(resource.RLIMIT_FSIZE, 64 * 1024 * 1024)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, _MAX_PROCESSES)
    with_hook = "--no-audit-hook" not in sys.argv[4:]
    os.chdir(workspace)
    source = sys.stdin.read()

    # numpy loads native helpers through ctypes at import, which the hook forbids later;
    # importing it first keeps the most used library available.
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass

    # multiprocessing reaches fork through _posixsubprocess without an audit event.
    import _posixsubprocess

    def _no_fork_exec(*_args: object) -> int:
        raise PermissionError("sandbox: starting processes is not allowed")

    if with_hook:
        _posixsubprocess.fork_exec = _no_fork_exec
    blocked, path_writes = _BLOCKED, dict(_PATH_WRITES)

    def inside(path: object) -> bool:
        if isinstance(path, int):  # an already open descriptor
            return True
        real = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
        return real == workspace or real.startswith(workspace + os.sep) or real == os.devnull

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event in blocked or event.startswith(("os.exec", "os.spawn")):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes and path is not None and not inside(path):
                raise PermissionError(f"sandbox: writing {path} (outside the workspace)")
        elif event in path_writes:
            for position in path_writes[event]:
                if position < len(args) and not inside(args[position]):
                    raise PermissionError(f"sandbox: {event} on {args[position]} (outside the "
                                          "workspace)")  # fmt: skip

    try:
        tree = ast.parse(source, "<task>", "exec")
    except SyntaxError as exc:
        sys.stderr.write(f"SyntaxError: {exc.msg} (line {exc.lineno})\n")
        sys.exit(1)
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        call = ast.Call(ast.Name("__show__", ast.Load()), [last.value], [])
        tree.body[-1] = ast.copy_location(ast.Expr(call), last)
        ast.fix_missing_locations(tree)

    def show(value: object) -> None:
        if value is not None:
            print(value)

    code = compile(tree, "<task>", "exec")
    # The task gets a fresh `__main__` (so pickling its functions works); this module, whose
    # globals the hook once read its tables from, is out of its reach. The hook keeps its
    # tables in its closure.
    task_main = types.ModuleType("__main__")
    task_main.__dict__["__show__"] = show
    sys.modules["__main__"] = task_main
    if with_hook:
        sys.addaudithook(hook)
    exec(code, task_main.__dict__)


main()
