"""Who holds a TCP port: checked before a managed server starts, so a stale process on the
port is reported by pid instead of being mistaken for our server being ready.

Two checks, because either alone misses cases:

- a test bind on every address the node's host resolves to (`localhost` is 127.0.0.1 *and*
  ::1), which catches listeners on the same address and on the wildcard;
- the kernel's table of listening sockets (`/proc/net/tcp`, `/proc/net/tcp6`), which also
  catches a listener our probe would reach that a bind does not conflict with (a stale server
  on ::1 when the host is `localhost`, or an IPv6-only wildcard).

    >>> reason = port_conflict("127.0.0.1", 8000)   # None when free
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Listener:
    address: IPAddress
    port: int
    inode: str


def listeners(port: int) -> list[Listener]:
    """Sockets in LISTEN state on `port` (any address), from /proc; empty without procfs."""
    found: list[Listener] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                continue
            hex_addr, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) != port:
                continue
            address = _parse_proc_address(hex_addr)
            if address is not None:
                found.append(Listener(address, port, fields[9]))
    return found


def _parse_proc_address(hex_addr: str) -> IPAddress | None:
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


def host_addresses(host: str, port: int = 0) -> list[IPAddress]:
    """The addresses `host` stands for (a name may resolve to several); [] if it does not resolve."""
    host = host.strip("[]")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    return addresses


def _overlaps(ours: IPAddress, theirs: IPAddress) -> bool:
    """Would a server of ours on `ours` and a listener on `theirs` meet (bind conflict, or our
    probe of `ours` reaching theirs)?"""
    return ours.is_unspecified or theirs.is_unspecified or ours == theirs


def _bind_conflict(address: IPAddress, port: int) -> bool:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False  # no IPv6 here: nothing can be listening on it either
    with sock:
        # SO_REUSEADDR: a socket in TIME_WAIT is no conflict; a listener still is (on Linux)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((str(address), port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def conflicting_listeners(host: str, port: int) -> list[Listener]:
    ours = host_addresses(host, port)
    return [lst for lst in listeners(port) if any(_overlaps(addr, lst.address) for addr in ours)]


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens where a server on host:port would bind or be probed."""
    return port_conflict(host, port) is None


def port_conflict(host: str, port: int) -> str | None:
    """None when host:port is free, else a sentence naming who holds it (pid and command when
    /proc lets us see them)."""
    addresses = host_addresses(host, port)
    if any(_bind_conflict(address, port) for address in addresses) or conflicting_listeners(host, port):
        return describe_holder(port, host)
    return None


def port_holders(port: int, host: str | None = None) -> list[int]:
    """Pids of processes holding a listening socket on `port` (restricted to the sockets that
    meet `host`'s addresses when given), when /proc lets us see them. Sorted, lowest first."""
    found = conflicting_listeners(host, port) if host is not None else listeners(port)
    if not found:
        return []
    targets = {f"socket:[{lst.inode}]" for lst in found}
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
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


def port_holder(port: int, host: str | None = None) -> int | None:
    """The pid of a process listening on `port`, when /proc lets us see it."""
    pids = port_holders(port, host)
    return pids[0] if pids else None


def command_line(pid: int, limit: int = 80) -> str:
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
    text = text or "?"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def process_start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/PID/stat field 22); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def describe_holder(port: int, host: str | None = None) -> str:
    pids = port_holders(port, host)
    if not pids:
        return f"port {port} is already in use by another process"
    shown = ", ".join(f"pid {pid} ({command_line(pid)})" for pid in pids[:3])
    more = f" and {len(pids) - 3} more" if len(pids) > 3 else ""
    return f"port {port} is already in use by {shown}{more}"
