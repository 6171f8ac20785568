"""The web UI app (default :8081): static files from `server/static/` (mermaid vendored,
nothing from a CDN) plus the native API routes under the same `base_path`.

The page talks to the API same-origin: the UI app mounts the very same route handlers (and
the same `ServerContext`, so the same engine host) as the API app. No CORS, no proxy hop, and
the API key rule is the same on both ports (static files need no key; the page asks for
one when the API answers 401 and keeps it in the browser's sessionStorage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar, get
from litestar.static_files import create_static_files_router

from .auth import api_key_middleware
from .errors import EXCEPTION_HANDLERS
from .host_check import host_check_middleware
from .routes_api import ServerContext, api_router

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_ui_app(ctx: ServerContext, *, api_key: str | None = None) -> Litestar:
    flow = ctx.host.flow
    # the page needs the API beside it: at the flow's base path, or /api when that is the root
    base = flow.server.base_path or "/api"

    @get("/ui-config.json", sync_to_thread=False, include_in_schema=False)
    def ui_config() -> dict[str, Any]:
        return {"base_path": base, "flow": ctx.host.flow.name, "auth": bool(api_key)}

    api_prefix = base + "/"

    def exempt(path: str) -> bool:
        # everything that is not the API is the page itself; the API needs the key but /health
        return not (path.startswith(api_prefix) or path == base) or path == f"{base}/health"

    return Litestar(
        route_handlers=[
            ui_config,
            api_router(ctx, base),
            create_static_files_router(path="/", directories=[STATIC_DIR], html_mode=True, name="ui"),
        ],
        middleware=[host_check_middleware(ctx.bind_host, lambda: ctx.host.flow.server.allowed_hosts), *api_key_middleware(api_key, exempt=exempt)],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=flow.server.max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )


__all__ = ["STATIC_DIR", "create_ui_app"]
