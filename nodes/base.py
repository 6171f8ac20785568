"""What every node type provides: a pydantic spec, and behaviour behind one small protocol.

Two kinds of node, kept apart on purpose:

- *service* nodes (env-setup, process-start) live as long as flowctl serves the flow; one
  supervisor starts them in dependency order and stops them in reverse;
- *per-run* nodes (http-stream, sse-sink) live for one run and yield chunks.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict


class NodeKind(str, enum.Enum):
    SERVICE = "service"
    RUN = "run"


class NodeSpecBase(BaseModel):
    """Fields every node accepts. Unknown fields are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[NodeKind]
    #: fields whose strings are `${...}` templates, resolved when the node starts or runs
    template_fields: ClassVar[tuple[str, ...]] = ()

    type: str
    needs: list[str] = []
    description: str | None = None


class ServiceState(str, enum.Enum):
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass
class ServiceStatus:
    state: ServiceState = ServiceState.PENDING
    reason: str | None = None
    pid: int | None = None
    restarts: int = 0
    #: why the process last went down on its own ("was killed by SIGSEGV"), kept after a
    #: restart brings it back, so "ready (2 restarts)" can say what the restarts were for
    last_exit: str | None = None
    last_log: str | None = None

    @property
    def ready(self) -> bool:
        return self.state is ServiceState.READY


@dataclass
class ServiceContext:
    """What a service node gets when it starts."""

    node_id: str
    #: the node's template fields, already resolved against `env` and upstream services' outputs
    resolved: Mapping[str, Any]
    #: where this flow keeps its venvs, stamps and logs (`.flowctl/` beside the flow by default)
    state_dir: Path
    #: shared across flows: content-addressed venvs live under `<cache_dir>/envs/`
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    #: called with one line at a time for live progress (console, log, UI)
    log: Any = print
    #: called when a started service dies or comes back, so the owner can react
    on_change: Any = None


def default_cache_dir() -> Path:
    """`$FLOWCTL_HOME`, else `$XDG_CACHE_HOME/flowctl`, else `~/.cache/flowctl`."""
    import os

    if os.environ.get("FLOWCTL_HOME"):
        return Path(os.environ["FLOWCTL_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flowctl"


class ServiceNode(Protocol):
    spec: NodeSpecBase
    status: ServiceStatus

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        """Set up or launch; return the node's output (what `${nodes.<id>.output...}` reads)."""

    async def stop(self) -> None:
        """Release everything `start` acquired. Must be safe to call twice or after a failure."""


@dataclass
class RunContext:
    """What a per-run node gets: its id, a resolver for its templates, and shared resources."""

    node_id: str
    run_id: str
    #: resolves one of the node's template fields; `extra` adds sources (e.g. `response[]`)
    resolve: Any
    #: the shared upstream `httpx.AsyncClient` (`engine.scheduler.new_http_client`)
    http: Any
    #: the node's parsed template fields and the scope they render against, for nodes that
    #: render one field per chunk and want the fast path (`Template.render_or`)
    fields: Mapping[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)


class RunNode(Protocol):
    spec: NodeSpecBase

    def run(self, ctx: RunContext) -> AsyncIterator[Any]:
        """Yield this run's chunks, in order. Closing the iterator releases everything."""


StreamType = Literal["stream/text", "stream/json"]
