"""Facts from the process table and the kernel's socket table (Linux `/proc`), in one place.

Everything flowctl asks about processes it did not start itself, or about a process's
members, goes through here: is a pid alive (zombies are not), when did it start (so a pid
reused by another program is told apart), what command is it, which processes are in a
process group, which listening sockets are on a port and who holds them. Without `/proc`
(another OS, a locked-down container) each answer says "unknown" (None, or an empty list),
and callers fall back to what `os.kill(pid, 0)` can tell.

psutil would answer the same questions portably, but flowctl's supervision is POSIX-only
anyway (process groups, `setsid`, a watchdog holding a pipe), the watchdog must stay a
dependency-free script, and these readers are a few lines each.

    >>> import os
    >>> alive(os.getpid()), start_ticks(os.getpid()) is not None, exiting(os.getpid())
    (True, True, False)
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- processes ----------------------------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses): field 3
    (state) is index 0, field 5 (pgid) index 2, field 22 (start time) index 19."""
    try:
        return (PROC / str(pid) / "stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None if unknown."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def command_line(pid: int) -> str | None:
    """The process's argv joined by spaces; None if unknown."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] != b"Z"


#: the kernel's "this task has begun to exit" flag (`PF_EXITING`, field 9 of /proc/PID/stat)
_PF_EXITING = 0x4


def exiting(pid: int) -> bool:
    """True once `pid` has begun to exit: the kernel closes a dying process's sockets (its
    clients see the connection end) before its exit can be waited for, and meanwhile the
    task carries `PF_EXITING`. False when it runs, is unknown, or there is no /proc."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 7:
        return False
    try:
        return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)
    except ValueError:
        return False


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes in process group `pgid`. Raises OSError when
    the process table cannot be listed."""
    members = []
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields is not None and len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(name))
    return members


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process of group `pgid` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return bool(group_members(pgid))
    except OSError:
        return True  # no /proc: trust kill(0), zombies included


# -- sockets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    address: IPAddress
    port: int
    inode: str


def listeners(port: int) -> list[Listener]:
    """Sockets in LISTEN state on `port` (any address); empty without /proc."""
    found: list[Listener] = []
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (PROC / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                continue
            hex_addr, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) != port:
                continue
            address = _parse_address(hex_addr)
            if address is not None:
                found.append(Listener(address, port, fields[9]))
    return found


def _parse_address(hex_addr: str) -> IPAddress | None:
    # /proc prints each 32-bit word in host byte order
    try:
        raw = bytes.fromhex(hex_addr)
    except ValueError:
        return None
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def socket_holders(found: list[Listener]) -> list[int]:
    """Pids of the processes holding one of these sockets open, lowest first (those /proc lets
    us see)."""
    if not found:
        return []
    targets = {f"socket:[{lst.inode}]" for lst in found}
    pids: list[int] = []
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    pids.append(int(entry.name))
                    break
        except OSError:
            continue
    return sorted(pids)


__all__ = ["Listener", "alive", "command_line", "group_alive", "group_members", "listeners", "socket_holders", "start_ticks"]
