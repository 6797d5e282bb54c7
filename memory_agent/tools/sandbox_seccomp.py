"""A seccomp filter for the python tool's sandbox, as the classic BPF program bwrap loads
with `--seccomp FD` (no library needed: the program is a few dozen 8-byte instructions).

It is a third layer, under the namespaces and the unprivileged uid: system calls that only
serve to attack the kernel or to leave the sandbox fail with EPERM, even where the kernel
would otherwise allow them (ptrace of one's own children, the kernel keyring, BPF, perf,
userfaultfd, mounting and namespace changes, module loading, kexec, reboot). clone with any
namespace flag fails with EPERM too; clone3, whose flags sit in memory a filter cannot read,
fails with ENOSYS, so the C library falls back to clone (threads and fork keep working).
Other architectures than x86-64 get no filter (`program()` returns None); a process of
another ABI (x32, i386) inside the filter is killed.
"""

from __future__ import annotations

import errno
import platform
import struct

# x86-64 system call numbers (asm/unistd_64.h) denied outright.
DENIED = {
    "ptrace": 101, "syslog": 103, "acct": 163, "pivot_root": 155, "chroot": 161,
    "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
    "iopl": 172, "ioperm": 173, "init_module": 175, "delete_module": 176, "quotactl": 179,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323, "open_tree": 428,
    "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_getfd": 438, "mount_setattr": 442,
}  # fmt: skip
CLONE = 56
CLONE3 = 435
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME
NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
NAMESPACE_FLAGS |= 0x40000000 | 0x00000080

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_KILL_PROCESS = 0x80000000
_ERRNO = 0x00050000
# Offsets in struct seccomp_data: nr, arch, and the low 32 bits of args[0] (little endian).
_NR, _ARCH, _ARG0_LOW = 0, 4, 16


def program() -> bytes | None:
    """The filter as bwrap reads it (struct sock_filter[]), or None off x86-64."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    # (code, jump-if-true label, jump-if-false label, k); labels resolve to relative jumps.
    body: list[tuple[int, str | None, str | None, int]] = [
        (_LD_ABS, None, None, _ARCH),
        (_JEQ, None, "kill", _AUDIT_ARCH_X86_64),
        (_LD_ABS, None, None, _NR),
        (_JGE, "deny", None, _X32_BIT),  # the x32 ABI numbers its calls from here
    ]
    body += [(_JEQ, "deny", None, number) for number in sorted(DENIED.values())]
    body += [
        (_JEQ, "enosys", None, CLONE3),
        (_JEQ, None, "allow", CLONE),
        (_LD_ABS, None, None, _ARG0_LOW),
        (_JSET, "deny", "allow", NAMESPACE_FLAGS),
    ]
    labels = {"allow": len(body), "deny": len(body) + 1, "enosys": len(body) + 2,
              "kill": len(body) + 3}  # fmt: skip
    body += [
        (_RET, None, None, _ALLOW),
        (_RET, None, None, _ERRNO | errno.EPERM),
        (_RET, None, None, _ERRNO | errno.ENOSYS),
        (_RET, None, None, _KILL_PROCESS),
    ]
    out = bytearray()
    for position, (code, true, false, k) in enumerate(body):
        jt = labels[true] - position - 1 if true else 0
        jf = labels[false] - position - 1 if false else 0
        assert 0 <= jt < 256 and 0 <= jf < 256
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)
