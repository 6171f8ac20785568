"""http-trigger: a service whose routes start runs (a webhook: Telegram, GitHub, a form).

A request to a trigger's path starts a run of its `workflow` with `input:` rendered over the
request (`${request.body.message.text}`), in the background, and is answered at once, as
model-compose does: 200 `{"task_id", "run_id", "status"}`; the run is then followed with the
API's `GET /runs/{id}` or `GET /tasks/{id}`. The run is admitted like any other (the
workflow exists, the inputs cast, the queue has room), so a bad webhook gets that 4xx.

Runs start only under `flowctl up` (it hands the service its `start_run`): a trigger has no
meaning for a single `flowctl run`.

    nodes:
      webhook:
        type: http-trigger
        port: 8091
        triggers:
          - path: /webhook
            workflow: handle-message
            input: {text: "${request.body.message.text}"}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ..engine.errors import FlowctlError
from .base import ServiceContext, ServiceState, ServiceStatus, StartRun
from .listen_server import Handler, Incoming, ListenServer
from .listener_spec import ListenerSpecBase, RequestTemplate, check_request_template


class TriggerRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "POST"
    #: the workflow a request starts (null: the default one)
    workflow: str | None = None
    #: the run's input, rendered over the request; default: the request's body
    input: Any = None

    @field_validator("input")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return check_request_template(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"`path: {value}` must start with /")
        return value


class HttpTriggerSpec(ListenerSpecBase):
    type: Literal["http-trigger"]
    triggers: list[TriggerRoute]


class HttpTriggerNode:
    def __init__(self, spec: HttpTriggerSpec) -> None:
        self.spec = spec
        self.status = ServiceStatus()
        self._server: ListenServer | None = None

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        spec = self.spec
        routes: dict[tuple[str, str], Handler] = {(route.method, spec.route(route.path)): self._handler(route, ctx.start_run) for route in spec.triggers}
        self.status.state = ServiceState.STARTING
        server = ListenServer(ctx.node_id, spec.host, spec.port, routes)
        await server.start()
        self._server = server
        self.status.state = ServiceState.READY
        ctx.event(f"triggers on http://{spec.host}:{server.port}: " + ", ".join(f"{route.method} {spec.route(route.path)} → {route.workflow or '(default)'}" for route in spec.triggers))
        return {"host": spec.host, "port": server.port, "url": f"http://{spec.host}:{server.port}{spec.base_path}"}

    @staticmethod
    def _handler(route: TriggerRoute, start_run: StartRun | None) -> Handler:
        template = RequestTemplate.of(route.input) if route.input is not None else None

        async def handle(incoming: Incoming) -> tuple[int, Any]:
            if start_run is None:
                return 503, {"error": "runs are started by a trigger only under `flowctl up`"}
            try:
                inputs = template.render(incoming.scope()) if template is not None else incoming.body
            except FlowctlError as exc:
                return 422, {"error": f"the request does not carry what the trigger's input reads: {exc}"}
            if inputs is None:
                inputs = {}
            if not isinstance(inputs, dict):
                return 422, {"error": "the trigger's input must be a mapping of input names to values"}
            try:
                return 200, start_run(route.workflow, inputs)
            except FlowctlError as exc:
                return exc.status_code, {"error": str(exc), **exc.details()}

        return handle

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
        self.status.state = ServiceState.STOPPED

    async def exited_within(self, timeout: float) -> bool:
        return False

    def exiting(self) -> bool:
        return False
