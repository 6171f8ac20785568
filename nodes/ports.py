"""Who holds a TCP port: checked before a managed server starts, so a stale process on the
port is reported by pid instead of being mistaken for our server being ready.

Two checks, because either alone misses cases:

- a test bind on every address the node's host resolves to (`localhost` is 127.0.0.1 *and*
  ::1), which catches listeners on the same address and on the wildcard;
- the kernel's table of listening sockets (`proc.listeners`), which also
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

from . import proc
from .proc import IPAddress, Listener


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
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
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
    return [lst for lst in proc.listeners(port) if any(_overlaps(addr, lst.address) for addr in ours)]


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
    return proc.socket_holders(conflicting_listeners(host, port) if host is not None else proc.listeners(port))


def command_line(pid: int, limit: int = 80) -> str:
    """`pid`'s command, shortened to `limit` characters, or `?`. Long paths lose their folders
    first (`.../fake_vllm.py`): the program and its arguments say more than where it lives,
    and a deep checkout would otherwise push them past the limit."""
    text = proc.command_line(pid) or "?"
    if len(text) > limit:
        text = " ".join(_tail_of_path(word) for word in text.split(" "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail_of_path(word: str) -> str:
    """`/a/long/path/to/tool.py` as `.../tool.py`; any other word as it is.

    >>> _tail_of_path("/work/checkout/tests/fake_server/fake_vllm.py"), _tail_of_path("--port")
    ('.../fake_vllm.py', '--port')
    """
    if word.count("/") < 2 or word.endswith("/"):
        return word
    return ".../" + word.rsplit("/", 1)[1]


def describe_holder(port: int, host: str | None = None) -> str:
    pids = port_holders(port, host)
    if not pids:
        return f"port {port} is already in use by another process"
    shown = ", ".join(f"pid {pid} ({command_line(pid)})" for pid in pids[:3])
    more = f" and {len(pids) - 3} more" if len(pids) > 3 else ""
    return f"port {port} is already in use by {shown}{more}"


def foreign_answerer(port: int, host: str, pgid: int, pid: int) -> str | None:
    """A probe of host:port answered; is it our process group answering? A sentence naming the
    processes when the listener predates our process `pid` (it won a race past the check
    before the start), else None (ours, or /proc cannot tell)."""
    holders = port_holders(port, host)
    if not holders:
        return None  # /proc does not tell us (or another network namespace, as with docker -p)
    ours_started = proc.start_ticks(pid)
    strangers = []
    for holder in holders:
        try:
            if os.getpgid(holder) == pgid:
                return None
        except OSError:
            continue
        theirs_started = proc.start_ticks(holder)
        if ours_started is not None and theirs_started is not None and theirs_started < ours_started:
            strangers.append(holder)
        else:
            return None  # started after ours, e.g. a proxy our command set up: give it the benefit
    if not strangers:
        return None
    shown = ", ".join(f"pid {stranger} ({command_line(stranger)})" for stranger in strangers[:3])
    return f"port {port} is answered by {shown}, which is not this node's process"
