"""flowctl's HTTP side: the Litestar API (native routes, model-compose compatible route,
OpenAI facade, metrics), SSE framing, the web UI, and `flowctl up` / `flowctl down`.

    from flowctl.server.app import create_app      # the API app for a FlowHost
    from flowctl.server.ui import create_ui_app    # the web UI app (same routes, static page)
    from flowctl.server.serve import up, down      # the commands

Modules: `app` (factory), `routes_api` / `routes_compat` (routers), `streaming` (a run as an
SSE or JSON answer, cancelled when the client goes away), `sse` (framing, pure), `auth`
(the API key rule), `errors` (exception -> status), `ui`, `serve`. Nothing is imported here,
so `flowctl down` does not pay for Litestar.
"""
