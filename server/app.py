"""The Litestar app factory: one app per served flow, composed from routers.

    app = create_app(host, api_key=os.environ.get("FLOWCTL_API_KEY"))
    uvicorn.run(app, port=8080)

Each feature is one module exporting a router factory; adding one (the OpenAI facade at
`/v1`, `/metrics`) is one import and one entry in `_routers` below. The web UI is a second
app (`server/ui.py`) served on its own port by the same process.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from litestar import Litestar, Router

from .. import __version__
from ..engine.host import FlowHost
from .api_docs import assets_router, openapi_config
from .auth import api_key_middleware
from .errors import EXCEPTION_HANDLERS
from .host_check import host_check_middleware
from .mcp import mcp_router
from .metrics import metrics_router
from .openai_facade import openai_router
from .probes import health_paths, probes_router
from .routes_api import ServerContext, api_router
from .routes_compat import compat_router

#: `: keep-alive` comment interval for SSE streams; FLOWCTL_SSE_KEEPALIVE overrides it
DEFAULT_KEEPALIVE = 15.0


def default_keepalive() -> float:
    try:
        return float(os.environ.get("FLOWCTL_SSE_KEEPALIVE", DEFAULT_KEEPALIVE))
    except ValueError:
        return DEFAULT_KEEPALIVE


def _routers(ctx: ServerContext, base_path: str) -> list[Router]:
    mcp_path = ctx.host.flow.server.mcp_path
    return [
        *([mcp_router(ctx, mcp_path)] if mcp_path is not None else []),  # server/mcp.py: the workflows as MCP tools
        api_router(ctx, base_path),
        compat_router(ctx, base_path),
        openai_router(ctx),  # server/openai_facade.py: /v1/models, /v1/chat/completions
        metrics_router(ctx),  # server/metrics.py: /metrics
        probes_router(base_path),  # server/probes.py: /health, /version at the root
        assets_router(base_path),  # server/api_docs.py: Swagger UI's files
    ]


def create_app(host: FlowHost, *, api_key: str | None = None, ctx: ServerContext | None = None, keepalive: float | None = None) -> Litestar:
    """The API app for `host`'s flow, under the flow's `server.base_path`. With `api_key`,
    every route but the health checks (`/health`, `{base_path}/health`) needs
    `Authorization: Bearer <api_key>`."""
    ctx = ctx or ServerContext(host=host, keepalive=default_keepalive() if keepalive is None else keepalive)
    server = host.flow.server
    base = server.base_path
    exempt = health_paths(base)
    return Litestar(
        route_handlers=_routers(ctx, base),
        middleware=[host_check_middleware(ctx.bind_host, lambda: host.flow.server.allowed_hosts), *api_key_middleware(api_key, exempt=exempt.__contains__)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=server.max_body_bytes,
        openapi_config=openapi_config(base, title="flowctl", version=__version__, description=f"flowctl serving {host.flow.name}"),
        logging_config=None,
        debug=False,
    )


AppFactory = Callable[..., Litestar]

__all__ = ["DEFAULT_KEEPALIVE", "ServerContext", "create_app", "default_keepalive"]
