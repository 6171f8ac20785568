"""What every node type provides: a pydantic spec, and behaviour behind one small protocol.

Two kinds of node, kept apart on purpose:

- *service* nodes (env-setup, process-start) live as long as flowctl serves the flow; one
  supervisor starts them in dependency order and stops them in reverse;
- *per-run* nodes (http-stream, sse-sink) live for one run and yield chunks.

A node type describes itself on its spec class, so the compiler and the scheduler never
compare type names: `kind` (service or per-run), `template_fields`, `is_sink` (a workflow's
output by default), `field_sources` (sources a field may read beyond its kind's, such as
http-stream's `response[]`) and `output_type` (what a workflow that outputs it yields).
Adding a node type is its own module plus one line in `registry.py`. Per-run specs derive
from `RunNodeSpec`, which adds what the scheduler applies to any node (`when:`,
`fallback:`) and what the pipeline nodes declare (`forwards`, `inner_field`,
`condition_fields`, `route_targets()`).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict

from ..engine.conditions import Condition
from ..engine.usage import TokenUsage

if TYPE_CHECKING:
    from ..engine.pauses import Pause
    from ..engine.templating import CompiledValue
    from .balancer import ReplicaPool
    from .callback_waits import CallbackWaits


class NodeKind(str, enum.Enum):
    SERVICE = "service"
    RUN = "run"


class NodeSpecBase(BaseModel):
    """Fields every node accepts. Unknown fields are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[NodeKind]
    #: fields whose strings are `${...}` templates, resolved when the node starts or runs
    template_fields: ClassVar[tuple[str, ...]] = ()
    #: a per-run node that is a workflow's output by default: a flow without `workflows:`
    #: gets one workflow per such node
    is_sink: ClassVar[bool] = False
    #: template sources a field may read beyond those of the node's kind, by field name
    #: (http-stream's `output:` reads each chunk as `response[]`, the whole body as `response`)
    field_sources: ClassVar[Mapping[str, frozenset[str]]] = {}

    type: str
    needs: list[str] = []
    description: str | None = None

    @classmethod
    def type_name(cls) -> str:
        """The `type:` value that selects this spec (its `Literal`)."""
        return str(typing.get_args(cls.model_fields["type"].annotation)[0])

    @classmethod
    def output_type(cls, fields: Mapping[str, CompiledValue]) -> str:
        """What a workflow whose output is this node yields: `stream/text`, `stream/json` or
        `value`, given the node's parsed template fields."""
        return "value"

    @property
    def is_service(self) -> bool:
        return self.kind is NodeKind.SERVICE

    def route_targets(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """Nodes this node decides about (a switch's cases), each with where in this spec it
        is named; they run only when chosen."""
        return []

    def services_named(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """Services this node sends requests to by name (http-stream's `service:`), each with
        where in this spec it is named: each is an upstream of this node."""
        return []

    def unservable(self) -> str | None:
        """Why another node cannot name this one as its `service:` (None: it can)."""
        return f"a '{self.type}' node serves no HTTP"


class RunNodeSpec(NodeSpecBase):
    """Fields every per-run node accepts on top of the common ones: control flow that the
    scheduler applies to any node (see docs/dag.md)."""

    kind: ClassVar[NodeKind] = NodeKind.RUN
    template_fields: ClassVar[tuple[str, ...]] = ("when",)
    #: may run as the per-item node of a `map`
    mappable: ClassVar[bool] = True
    #: the field (if any) whose whole value, when it is one `${... as stream/...}`, the node
    #: forwards chunk for chunk unchanged: the scheduler may then hand that stream on itself
    forwards: ClassVar[str | None] = None
    #: the field (if any) holding a per-item node spec (a map's `node:`, a loop's body)
    inner_field: ClassVar[str | None] = None
    #: template sources that node reads besides its kind's (a map's `${item}`, `${index}`)
    inner_sources: ClassVar[frozenset[str]] = frozenset({"item", "index"})
    #: fields that are conditions (read as truth values, never streams)
    condition_fields: ClassVar[tuple[str, ...]] = ("when",)

    #: run only when this holds (a template read as a truth value, or a comparison); else
    #: the node is skipped and what reads it gets its `| default` or null
    when: Condition = None
    #: a per-run node whose output stands in for this one's when this one fails before
    #: producing anything (after its retries)
    fallback: str | None = None


class ServiceState(str, enum.Enum):
    PENDING = "pending"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    #: a service with replicas, some of which are down: it still serves (ready), on the rest
    DEGRADED = "degraded"


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
    #: when (epoch seconds) the current process started; None without a process
    started: float | None = None

    @property
    def ready(self) -> bool:
        """It serves: ready, or degraded (some of its replicas down, the rest serving)."""
        return self.state is ServiceState.READY or self.state is ServiceState.DEGRADED


class LineKind(str, enum.Enum):
    """What a line about a service is, so the console can choose what to show."""

    #: a line of the service's own output (its process, its build): always in its log file,
    #: on the console only with `--verbose`
    OUTPUT = "output"
    #: flowctl's words about the service: started, ready, exited, restarting
    EVENT = "event"
    #: a heartbeat while a long step runs: elapsed time and the latest output line
    PROGRESS = "progress"


@dataclass(frozen=True)
class ServiceLine:
    """One line about a service, for the console (`up`'s, `run`'s) and whoever else listens.

    >>> str(ServiceLine("llm", "ready after 1.2s"))
    '[llm] ready after 1.2s'
    """

    node: str
    text: str
    kind: LineKind = LineKind.EVENT

    def __str__(self) -> str:
        return f"[{self.node}] {self.text}"


#: where lines about services go (`server.console.Console.service`, or stderr)
LogSink = Callable[[ServiceLine], None]
#: told when a started service dies or comes back: (node id, its status)
ChangeSink = Callable[[str, "ServiceStatus"], None]
#: start a run in the background: (workflow id or None for the default, inputs) -> the
#: run's `{"task_id", "run_id", "status"}`; raises the admission's FlowctlError
StartRun = Callable[[str | None, Mapping[str, Any]], dict[str, Any]]


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
    #: told each line about the service (console; see `event`, `output`, `progress`)
    log: LogSink = print
    #: called when a started service dies or comes back, so the owner can react
    on_change: ChangeSink | None = None
    #: set up again even when the stamp says the setup is current (`flowctl up --build`)
    rebuild: bool = False
    #: the node's template fields rendered again with extra sources (`{"replica": {...}}`
    #: for `${replica.port}`: a port chosen at start); None: `resolved` is all there is
    render: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    #: which replica of its node this is (0 for a node without replicas)
    replica_index: int = 0
    #: starts runs (an http-trigger's requests); None outside `flowctl up`
    start_run: StartRun | None = None

    def fields(self, extra: Mapping[str, Any]) -> Mapping[str, Any]:
        """The template fields rendered with `extra` sources (or `resolved` when it cannot)."""
        return self.render(extra) if self.render is not None else self.resolved

    def event(self, text: str) -> None:
        """flowctl's words about this service (started, ready, exited)."""
        self.log(ServiceLine(self.node_id, text, LineKind.EVENT))

    def output(self, line: str) -> None:
        """One line of the service's own output."""
        self.log(ServiceLine(self.node_id, line, LineKind.OUTPUT))

    def progress(self, text: str) -> None:
        """A heartbeat of a long step."""
        self.log(ServiceLine(self.node_id, text, LineKind.PROGRESS))


def duration(seconds: float) -> str:
    """How long, as a person reads it.

    >>> duration(42.4), duration(185), duration(7260)
    ('42s', '3m05s', '2h01m')
    """
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def default_cache_dir() -> Path:
    """`$FLOWCTL_HOME`, else `$XDG_CACHE_HOME/flowctl`, else `~/.cache/flowctl`."""
    import os

    if os.environ.get("FLOWCTL_HOME"):
        return Path(os.environ["FLOWCTL_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "flowctl"


class ServiceNode(Protocol):
    @property
    def status(self) -> ServiceStatus: ...

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        """Set up or launch; return the node's output (what `${nodes.<id>.output...}` reads)."""

    async def stop(self) -> None:
        """Release everything `start` acquired. Must be safe to call twice or after a failure."""

    async def exited_within(self, timeout: float) -> bool:
        """True if the service's process has exited or exits within `timeout` seconds; False
        at once for a service without a process. For an owner that saw a connection to it
        break and wants to know whether it died (its exit is seen a moment after its
        sockets close)."""

    def exiting(self) -> bool:
        """True while the service's process has begun to exit but its exit is not recorded
        yet (it still looks up); False for a service without a process."""


class Resolver(Protocol):
    def __call__(self, field: str, extra: Mapping[str, Any] | None = None) -> Any:
        """One of the node's template fields rendered now; `extra` adds sources (`response[]`)."""


@dataclass
class RunContext:
    """What a per-run node gets: its id, a resolver for its templates, and shared resources."""

    node_id: str
    run_id: str
    resolve: Resolver
    #: the shared upstream client (`engine.scheduler.new_http_client`)
    http: httpx.AsyncClient
    #: the node's parsed template fields and the scope they render against, for nodes that
    #: render one field per chunk and want the fast path (`Template.render_or`)
    fields: Mapping[str, CompiledValue] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)
    #: `report(state, **details)`: tell whoever watches the run about a step inside the node
    #: (a retry, say); a no-op unless the run streams node events
    report: Callable[..., None] = field(default=lambda state, **details: None)
    #: a switch names the nodes it routes to (the rest of its targets are skipped)
    choose: Callable[[Sequence[str]], None] = field(default=lambda targets: None)
    #: a map (or loop) runs its inner node: `await run_item({"item": x, "index": i})` -> its output
    run_item: Callable[[Mapping[str, Any]], Awaitable[Any]] | None = None
    #: a node whose upstream reported token counts (OpenAI's `usage`) says so, once, at its end
    usage: Callable[[TokenUsage], None] = field(default=lambda usage: None)
    #: the running services' balancing pools by node id (http-stream's `service:`)
    pools: Mapping[str, ReplicaPool] = field(default_factory=dict)
    #: a pause node waits for a person's answer: `await pause(Pause(...))`; None where the
    #: run cannot be answered (`flowctl run` without `up`)
    pause: PauseWaiter | None = None
    #: the running callback listeners' waits by node id (http-stream's `completion:`)
    callbacks: Mapping[str, CallbackWaits] = field(default_factory=dict)


#: how a node waits for its run's answer (`RunRecord.pause`)
PauseWaiter = Callable[["Pause"], Awaitable[Any]]

#: what a per-run node yields; an async generator, so its consumer can `aclose` it
Chunks = AsyncGenerator[Any, None]


class RunNode(Protocol):
    def run(self, ctx: RunContext) -> Chunks:
        """Yield this run's chunks, in order. Closing the generator releases everything."""


StreamType = Literal["stream/text", "stream/json"]
