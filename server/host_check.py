"""The `Host` header rule, against DNS rebinding.

A web page on `evil.example` can make its own name resolve to 127.0.0.1 and then talk to a
loopback flowctl as if it were its own origin: the browser's same-origin rule does not stop
it, only the `Host: evil.example` header shows it. So a request is served only when its
`Host` (port ignored) is

- an IP address (a rebinding page always uses a name),
- `localhost` or a name under `.localhost`,
- the name flowctl was told to bind (`--host` / `server.host`), or
- listed in the flow's `server.allowed_hosts` (`.example.com` also allows its subdomains;
  `"*"` turns the check off, e.g. behind a proxy that checks names itself).

Anything else gets 403 naming the host and the setting. Jupyter and Vite's dev server do
the same. The list is read from the served flow on each request, so a reload applies it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from litestar.types import ASGIApp, Receive, Scope, Send

from ..engine.errors import HostNotAllowed
from .errors import send_refusal


def host_name(header: str) -> str:
    """The name in a `Host` header, without the port, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header.rstrip(".")


def host_allowed(name: str, bind_host: str | None, allowed: Sequence[str]) -> bool:
    if "*" in allowed:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if bind_host and name == host_name(bind_host):
        return True
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if name == pattern.lstrip(".") or (pattern.startswith(".") and name.endswith(pattern)):
            return True
    return False


class HostCheckMiddleware:
    """Wraps an ASGI app; `allowed()` gives the configured names at the time of a request."""

    def __init__(self, app: ASGIApp, *, bind_host: str | None, allowed: Callable[[], Sequence[str]]) -> None:
        self.app = app
        self._bind_host = bind_host
        self._allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((value for name, value in scope["headers"] if name == b"host"), None)
            if header is not None:
                name = host_name(header.decode("latin-1"))
                if not host_allowed(name, self._bind_host, self._allowed()):
                    await _forbid(name, scope, send)
                    return
        await self.app(scope, receive, send)


async def _forbid(name: str, scope: Scope, send: Send) -> None:
    shown = name[:80] + ("..." if len(name) > 80 else "")
    hint = "add the name to the flow's `server.allowed_hosts` (it guards against DNS rebinding)"
    await send_refusal(send, scope["path"], HostNotAllowed(f"requests for host '{shown}' are not served here", hint=hint))


def host_check_middleware(bind_host: str | None, allowed: Callable[[], Sequence[str]]) -> Callable[[ASGIApp], ASGIApp]:
    """For `Litestar(middleware=[...])`."""

    def factory(app: ASGIApp) -> ASGIApp:
        return HostCheckMiddleware(app, bind_host=bind_host, allowed=allowed)

    return factory


__all__ = ["HostCheckMiddleware", "host_allowed", "host_check_middleware", "host_name"]
