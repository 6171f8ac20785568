"""What model servers answer at the root by convention (vLLM's), for load balancers,
Kubernetes probes and scripts that know vLLM and not flowctl's `base_path`:

    GET /health     200 {"status": "ok"} while flowctl answers; needs no API key
    GET /version    {"version": "0.1.0"} (flowctl's)

`/health` is the same handler as `{base_path}/health`: liveness, true as soon as flowctl
listens. vLLM listens only once its model is loaded, so there the two mean the same; flowctl
listens before its services are ready (a first build takes minutes), so whether it can take
runs is `{base_path}/ready` (503 until every service is up). A probe that restarts the
process belongs on `/health`, one that routes traffic on `/ready`.
"""

from __future__ import annotations

from litestar import Router, get

from .. import __version__
from .routes_api import health

ROOT_HEALTH = "/health"


def health_paths(base_path: str) -> frozenset[str]:
    """The paths that answer liveness, which need no API key."""
    return frozenset({ROOT_HEALTH, f"{base_path}/health"})


@get("/version", sync_to_thread=False)
def version() -> dict[str, str]:
    return {"version": __version__}


def probes_router(base_path: str) -> Router:
    """`/health` (unless the API itself is at the root, where it already is) and `/version`."""
    handlers = [version] if f"{base_path}/health" == ROOT_HEALTH else [health, version]
    return Router(path="/", route_handlers=handlers, tags=["probes"])


__all__ = ["ROOT_HEALTH", "health_paths", "probes_router", "version"]
