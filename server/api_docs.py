"""The API's own documentation pages, under `{base_path}/schema`, working offline.

    GET {base_path}/schema                 Swagger UI (also at `/schema/swagger`)
    GET {base_path}/schema/openapi.json    the OpenAPI document (`.yaml` too)
    GET {base_path}/schema/static/...      Swagger UI's script and stylesheet

Litestar's documentation pages load their scripts (and a favicon) from public CDNs, so on a
machine without internet, which is where flowctl's default flow is meant to run, they were
blank. This serves one of them, Swagger UI (the page vLLM and FastAPI serve at `/docs`), from
files vendored unmodified from npm's `swagger-ui-dist` in `server/static/swagger-ui/` (with
its licence and notice), and turns the other CDN pages (ReDoc, RapiDoc, Elements, Scalar) off.
"""

from __future__ import annotations

from litestar import Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin, YamlRenderPlugin
from litestar.static_files import create_static_files_router

from .ui import STATIC_DIR

SWAGGER_DIR = STATIC_DIR / "swagger-ui"


def docs_path(base_path: str) -> str:
    return f"{base_path}/schema"


def assets_path(base_path: str) -> str:
    return f"{docs_path(base_path)}/static"


def openapi_config(base_path: str, *, title: str, version: str, description: str) -> OpenAPIConfig:
    """The OpenAPI document and Swagger UI, every URL the page loads on this server."""
    assets = assets_path(base_path)
    swagger = SwaggerRenderPlugin(
        js_url=f"{assets}/swagger-ui-bundle.js",
        css_url=f"{assets}/swagger-ui.css",
        standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon="",  # Litestar's default is an image on a CDN
    )
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        path=docs_path(base_path),
        render_plugins=[swagger, JsonRenderPlugin(), YamlRenderPlugin()],
    )


def assets_router(base_path: str) -> Router:
    """The vendored Swagger UI files, under `{base_path}/schema/static/`."""
    return create_static_files_router(path=assets_path(base_path), directories=[SWAGGER_DIR], name="api-docs-assets", include_in_schema=False)


__all__ = ["SWAGGER_DIR", "assets_path", "assets_router", "docs_path", "openapi_config"]
