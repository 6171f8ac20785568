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

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import field_validator

from ..engine.errors import FlowctlError
from .base import ServiceContext, StartRun
from .listen_server import Handler, Incoming
from .listener_base import ListenerNode, ListenerRoute, ListenerSpecBase, RequestTemplate, check_request_template


class TriggerRoute(ListenerRoute):
    #: the workflow a request starts (null: the default one)
    workflow: str | None = None
    #: the run's input, rendered over the request; default: the request's body
    input: Any = None

    @field_validator("input")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return check_request_template(value)


class HttpTriggerSpec(ListenerSpecBase):
    type: Literal["http-trigger"]
    triggers: list[TriggerRoute]


class HttpTriggerNode(ListenerNode):
    def __init__(self, spec: HttpTriggerSpec) -> None:
        super().__init__()
        self.spec: HttpTriggerSpec = spec

    def handlers(self, ctx: ServiceContext) -> Mapping[tuple[str, str], Handler]:
        return {(route.method, self.spec.route(route.path)): self._handler(route, ctx.start_run) for route in self.spec.triggers}

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
