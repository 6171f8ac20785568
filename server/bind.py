"""Where `flowctl up` listens: the loopback rule, and binding its sockets before anything starts.

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
    (True, False)
    >>> check_bind("0.0.0.0", api_key=None, insecure=False) is not None   # refused: no key
    True
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..nodes.listener_base import ListenerSpecBase

if TYPE_CHECKING:
    from ..engine.graph import CompiledFlow


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, insecure: bool) -> str | None:
    """Why binding `host` is refused, or None."""
    if is_loopback(host) or api_key or insecure:
        return None
    return f"refusing to serve on {host} without an API key: set FLOWCTL_API_KEY (clients send `Authorization: Bearer <key>`) or pass --insecure"


def listener_refusal(flow: CompiledFlow, insecure: bool, only: Iterable[str] | None = None, *, remedy: str = "or pass --insecure") -> str | None:
    """Why a listener node (http-callback, http-trigger; of `only`, default all) may not bind
    its host, or None. Its callers (an upstream calling back, a webhook) do not send
    flowctl's API key, so a key does not cover it: beyond loopback it needs --insecure (a
    tunnel reaches 127.0.0.1)."""
    wanted = set(only) if only is not None else set(flow.nodes)
    for node_id, node in flow.nodes.items():
        spec = node.spec
        if node_id in wanted and isinstance(spec, ListenerSpecBase) and not is_loopback(spec.host) and not insecure:
            return (f"refusing to run {spec.type} listener '{node_id}' on {spec.host}: its callers do not send flowctl's API key; "
                    f"give it `host: 127.0.0.1` (a tunnel in front reaches that) {remedy}")
    return None


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind (not yet listen: connections are refused until we serve) so the port is ours
    before the services start. OSError when it is taken."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock


def url_for(host: str, port: int, path: str = "") -> str:
    """The URL a client uses for a server bound to host:port (the wildcard is reached on
    loopback)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


__all__ = ["bind_socket", "check_bind", "is_loopback", "listener_refusal", "url_for"]
