"""flowctl's HTTP side: the Litestar API (native routes, model-compose compatible route,
OpenAI facade, metrics), SSE framing, the web UI, and `flowctl up` / `flowctl down`.

    from flowctl.server.app import create_app      # the API app for a FlowHost
    from flowctl.server.ui import create_ui_app    # the web UI app (same routes, static page)
    from flowctl.server.up import up               # `flowctl up`, given UpOptions
    from flowctl.server.down import down           # `flowctl down`

Modules: `app` (factory), `routes_api` / `routes_compat` / `openai_facade` / `metrics`
(routers), `streaming` (a run as an SSE or JSON answer, cancelled when the client goes
away), `ready_chunks` (a burst in one write), `sse` (framing, pure), `auth` (the API key
rule), `errors` (exception -> HTTP answer, flowctl's and OpenAI's shape), `ui`; and for the
commands `options` (UpOptions, Settings), `bind` (the loopback rule, sockets), `pidfile`,
`up` (startup -> main loop -> shutdown), `detach`, `down`, `console`. Nothing is imported
here, so `flowctl down` does not pay for Litestar.
"""
