"""What the two listener service nodes (`http-callback`, `http-trigger`) have in common: where
they listen, their routes, templates over the incoming request (`${request.body...}`,
`${request.query...}`, `${request.headers...}`, checked when the flow loads and rendered per
request), and their lifetime: a `ListenServer` from start to stop.

    >>> RequestTemplate.of("${request.body.task_id}").render({"body": {"task_id": 7}, "query": {}, "headers": {}})
    7
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..engine.errors import TemplateError
from ..engine.templating import CompiledValue, compile_value
from .base import NodeKind, NodeSpecBase, ServiceContext, ServiceState, ServiceStatus
from .listen_server import Handler, ListenServer

#: what a listener's templates read: the request that came in
REQUEST_FIELDS = ("body", "query", "headers")


class RequestTemplate:
    """A value tree over `${request...}`, rendered against one incoming request."""

    def __init__(self, compiled: CompiledValue) -> None:
        self.compiled = compiled

    @classmethod
    def of(cls, value: Any) -> RequestTemplate:
        return cls(compile_value(value))

    def render(self, request: dict[str, Any]) -> Any:
        return self.compiled.render({"request": request})


def check_request_template(value: Any) -> Any:
    """`value`'s templates read only `${request.body|query|headers...}`; ValueError otherwise."""
    try:
        compiled = compile_value(value)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    for ref in compiled.references:
        if ref.source != "request" or not ref.path or ref.path[0] not in REQUEST_FIELDS:
            raise ValueError(f"'{ref.dotted}': a listener reads the incoming request only: ${{request.body...}}, ${{request.query...}}, ${{request.headers...}}")
    return value


class ListenerRoute(BaseModel):
    """One route of a listener: a path (after `base_path`) and the method it takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "POST"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"`path: {value}` must start with /")
        return value


class ListenerSpecBase(NodeSpecBase):
    """A service that serves its own port for as long as the flow is served."""

    kind: ClassVar[NodeKind] = NodeKind.SERVICE

    #: where it listens: loopback unless told otherwise (`flowctl up` then asks for
    #: --insecure: the callers of a listener do not send flowctl's API key)
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    #: a prefix before every route's path
    base_path: str = ""

    @field_validator("base_path")
    @classmethod
    def _slash(cls, value: str) -> str:
        value = "/" + value.strip("/")
        return "" if value == "/" else value

    def route(self, path: str) -> str:
        return self.base_path + "/" + path.lstrip("/")

    def unservable(self) -> str | None:
        return f"a '{self.type}' node takes requests, it is no upstream to send them to"


class ListenerNode:
    """A listener's lifetime: its server from `start` to `stop`. A subclass says its routes
    (`handlers`) and what they do."""

    spec: ListenerSpecBase

    def __init__(self) -> None:
        self.status = ServiceStatus()
        self._server: ListenServer | None = None

    def handlers(self, ctx: ServiceContext) -> Mapping[tuple[str, str], Handler]:
        """(method, full path) → what answers it."""
        raise NotImplementedError

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        spec = self.spec
        routes = self.handlers(ctx)
        self.status.state = ServiceState.STARTING
        server = ListenServer(ctx.node_id, spec.host, spec.port, routes)
        await server.start()
        self._server = server
        self.status.state = ServiceState.READY
        ctx.event(f"listening on http://{spec.host}:{server.port}: " + ", ".join(f"{method} {path}" for method, path in routes))
        return {"host": spec.host, "port": server.port, "url": f"http://{spec.host}:{server.port}{spec.base_path}"}

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        self.status.state = ServiceState.STOPPED

    async def exited_within(self, timeout: float) -> bool:
        return False

    def exiting(self) -> bool:
        return False
