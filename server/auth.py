"""The API key rule: with `FLOWCTL_API_KEY` set, every request but the exempt ones (liveness,
the web UI's static files) must carry `Authorization: Bearer <key>`.

`flowctl up` refuses to bind a non-loopback address without a key unless `--insecure`
(see `serve.check_bind`); with a key set it is required on loopback too.

A raw ASGI middleware (no Litestar request object is built) so it costs next to nothing on
the hot path. Paths under `/v1/` get OpenAI's error body, the others flowctl's.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable

from litestar.types import ASGIApp, Receive, Scope, Send

from ..engine.errors import Unauthorized
from .errors import send_refusal

ENV_VAR = "FLOWCTL_API_KEY"


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return token.strip()
            return None
    return None


class ApiKeyMiddleware:
    """Wraps an ASGI app; `exempt(path)` says which paths need no key."""

    def __init__(self, app: ASGIApp, *, api_key: str, exempt: Callable[[str], bool]) -> None:
        self.app = app
        self._key = api_key.encode()
        self._exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope["headers"])
        if token is not None and hmac.compare_digest(token, self._key):
            await self.app(scope, receive, send)
            return
        refused = Unauthorized("missing API key" if token is None else "wrong API key", hint=f"send the key of {ENV_VAR} as `Authorization: Bearer <key>`")
        await send_refusal(send, scope["path"], refused, headers=((b"www-authenticate", b'Bearer realm="flowctl"'),))


def api_key_middleware(api_key: str | None, exempt: Callable[[str], bool]) -> list[Callable[[ASGIApp], ASGIApp]]:
    """For `Litestar(middleware=...)`: empty when no key is set."""
    if not api_key:
        return []

    def factory(app: ASGIApp) -> ASGIApp:
        return ApiKeyMiddleware(app, api_key=api_key, exempt=exempt)

    return [factory]


__all__ = ["ENV_VAR", "ApiKeyMiddleware", "api_key_middleware", "bearer_token"]
