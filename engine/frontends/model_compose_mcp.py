"""model-compose's `mcp-server` controller, lowered: the flow's workflows served as MCP tools.

    controller:                      server:
      type: mcp-server                 mcp_path: /mcp     (MCP, Streamable HTTP: server/mcp.py)
      base_path: /mcp                  base_path: /api    (flowctl's own API stays up beside it)
      port: 8080                       port: 8080

model-compose (0.4.x) serves the tools with the `mcp` SDK's FastMCP over Streamable HTTP at
`base_path` (default `/`), or over stdio with the adapter form's `transport: stdio`; flowctl
serves the HTTP transport only. model-compose's MCP controller serves nothing else on its
port; flowctl keeps its API (health, readiness, runs, the OpenAI facade, metrics) under its
default `/api` beside the MCP endpoint, since `flowctl ps`, `down`, `run` against an `up` and
the web UI talk to it.

    >>> lower_mcp_listener({"type": "mcp-server", "base_path": "/mcp"})
    {'base_path': '/api', 'mcp_path': '/mcp'}
    >>> lower_mcp_listener({"type": "mcp-server"})["mcp_path"]
    '/'
"""

from __future__ import annotations

from typing import Any

from . import model_compose_keys as keys

MCP_SERVER = "mcp-server"

#: McpServerControllerAdapterConfig (0.4.100+): the HTTP adapter's keys and `transport`
MCP_ADAPTER = keys.Section(
    supported=keys.HTTP_ADAPTER.supported,
    unsupported=keys.HTTP_ADAPTER.unsupported,
    noop={**keys.HTTP_ADAPTER.noop, "transport": ("http",)},
    noop_not_default=keys.HTTP_ADAPTER.noop_not_default,
)

#: flowctl's own API path when the controller is an MCP server (model-compose serves none)
API_BESIDE_MCP = "/api"


def serves_mcp(controller: dict[str, Any], adapter: dict[str, Any] | None) -> bool:
    """The controller (or its one adapter) is an MCP server."""
    return (adapter if adapter is not None else controller).get("type") == MCP_SERVER


def lower_mcp_listener(listener: dict[str, Any]) -> dict[str, Any]:
    """The `server:` keys for an MCP controller (or adapter); host and port are lowered as for
    an HTTP one."""
    return {"base_path": API_BESIDE_MCP, "mcp_path": listener.get("base_path") or "/"}


__all__ = ["MCP_ADAPTER", "MCP_SERVER", "lower_mcp_listener", "serves_mcp"]
