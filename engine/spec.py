"""FlowSpec: the one internal contract both front ends produce and everything after reads.

It is also the native flow format itself (`flowctl schema` prints its JSON Schema). Nothing
after the front ends knows which form a flow was written in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..nodes.registry import NodeSpec

INPUT_TYPES = ("text", "string", "number", "integer", "boolean", "json", "object", "list")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSpec(_Strict):
    """Where `flowctl up` serves the flow. The API binds 127.0.0.1 unless told otherwise."""

    host: str = "127.0.0.1"
    port: int = 8080
    base_path: str = "/api"
    #: port of the web UI; null turns it off
    ui_port: int | None = 8081
    #: runs of one workflow at once; more wait in a queue
    max_concurrency: int = 64
    #: runs that may wait for a slot before new ones get HTTP 429
    max_queue: int = 256
    #: largest request body accepted, in bytes
    max_body_bytes: int = 1_048_576
    #: seconds runs in flight get to finish when flowctl stops, or before a reload restarts a
    #: service they use (0: cut them at once)
    drain_timeout: float = 10.0
    #: seconds a client gets to send a request's head, and then its body (a slowloris guard)
    read_timeout: float = Field(default=15.0, gt=0)
    #: names (besides IP addresses, `localhost` and the bound host) that requests may carry
    #: in their `Host` header; `.example.com` includes subdomains, `"*"` allows any
    allowed_hosts: list[str] = []
    #: where the flow's workflows are served as MCP tools (Streamable HTTP, server/mcp.py),
    #: e.g. `/mcp`; null: no MCP endpoint
    mcp_path: str | None = None

    @field_validator("base_path")
    @classmethod
    def _slash(cls, value: str) -> str:
        value = "/" + value.strip("/")
        return "" if value == "/" else value

    @field_validator("mcp_path")
    @classmethod
    def _mcp_apart(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        path, base = "/" + value.strip("/"), info.data.get("base_path")
        # its POST must not shadow (or be shadowed by) a run route
        if any(path == prefix or path.startswith(prefix + "/") for prefix in (base, "/v1", "/metrics") if prefix):
            raise ValueError(f"the MCP endpoint's path {path!r} lies under flowctl's API routes ({base or '/'}, /v1, /metrics): give it a path of its own, e.g. /mcp")
        return path


class InputSpec(_Strict):
    """A declared workflow input. Undeclared inputs are inferred from `${input.x as T | d}`."""

    type: Literal["text", "string", "number", "integer", "boolean", "json", "object", "list"] = "text"
    default: Any = None
    required: bool | None = None
    description: str | None = None


class OpenAISpec(_Strict):
    """How the OpenAI-compatible facade maps a chat request onto this workflow's inputs."""

    model: str | None = None
    #: input name -> template over source `request`, e.g. `${request.messages[-1].content}`
    inputs: dict[str, Any] = {}


class WorkflowSpec(_Strict):
    title: str | None = None
    description: str | None = None
    #: the node whose output is the workflow's output (usually an sse-sink)
    output: str
    inputs: dict[str, InputSpec] | None = None
    default: bool = False
    openai: OpenAISpec | None = None
    max_concurrency: int | None = None


class FlowSpec(_Strict):
    """A whole flow: typed nodes (edges from `needs:` and `${nodes.<id>...}`) and workflows."""

    version: Literal[1] = 1
    name: str | None = None
    description: str | None = None
    server: ServerSpec = ServerSpec()
    nodes: dict[str, NodeSpec] = Field(default_factory=dict)
    #: default: one workflow per sse-sink node, named by the node id
    workflows: dict[str, WorkflowSpec] = Field(default_factory=dict)
