"""http-callback: a service that takes upstreams' callbacks and hands each to the job waiting for it.

An upstream that works long (a video, a batch) answers its request at once with a task id and
POSTs the result later to a URL it was given. The request node waits (`completion:` on
http-stream) for the callback whose identity, `identify_by` rendered over the callback
request (`${request.body.task_id}`), equals its own `wait_for`; `result` (default: the whole
body) is what it gets. A callback nobody waits for is answered 404, so an upstream calling
back with a wrong id hears so; a status in `fail_when` fails the waiting job.

    nodes:
      callbacks:
        type: http-callback
        port: 8090
        callbacks:
          - path: /callback
            identify_by: ${request.body.task_id}
            result: ${request.body.result}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import field_validator

from ..engine.errors import FlowctlError
from .base import ServiceContext
from .callback_waits import CallbackWaits, Delivered
from .listen_server import Handler, Incoming
from .listener_base import ListenerNode, ListenerRoute, ListenerSpecBase, RequestTemplate, check_request_template

#: the identity of a callback (and a wait) that names none, as in model-compose
DEFAULT_IDENTITY = "__callback__"


class CallbackRoute(ListenerRoute):
    #: the callback's identity, matched against a waiting job's `wait_for` (as text)
    identify_by: Any = None
    #: what the waiting job gets as `${result}`; default: the callback's whole body
    result: Any = None
    #: the callback's status; one in `fail_when` fails the job, anything else is success
    status: Any = None
    success_when: list[Any] = []
    fail_when: list[Any] = []

    @field_validator("identify_by", "result", "status")
    @classmethod
    def _templates(cls, value: Any) -> Any:
        return check_request_template(value)


class HttpCallbackSpec(ListenerSpecBase):
    type: Literal["http-callback"]
    callbacks: list[CallbackRoute]


class HttpCallbackNode(ListenerNode):
    def __init__(self, spec: HttpCallbackSpec) -> None:
        super().__init__()
        self.spec: HttpCallbackSpec = spec
        #: what http-stream's `completion:` waits on (the supervisor hands it to the runs)
        self.callbacks = CallbackWaits()

    def handlers(self, ctx: ServiceContext) -> Mapping[tuple[str, str], Handler]:
        return {(route.method, self.spec.route(route.path)): self._handler(route) for route in self.spec.callbacks}

    def _handler(self, route: CallbackRoute) -> Handler:
        identify = RequestTemplate.of(route.identify_by) if route.identify_by is not None else None
        result = RequestTemplate.of(route.result) if route.result is not None else None
        status = RequestTemplate.of(route.status) if route.status is not None else None
        fail_when = [str(value) for value in route.fail_when]

        async def handle(incoming: Incoming) -> tuple[int, Any]:
            request = incoming.scope()
            try:
                identity = str(identify.render(request)) if identify is not None else DEFAULT_IDENTITY
                said = status.render(request) if status is not None else None
                failed = said is not None and str(said) in fail_when
                value = result.render(request) if result is not None and not failed else incoming.body
            except FlowctlError as exc:  # a template over a body that lacks the path, or a cast
                return 400, {"error": f"the callback does not carry what the listener reads: {exc}"}
            outcome = Delivered(failure=f"the upstream's callback for '{identity}' reported status '{said}'") if failed else Delivered(result=value)
            if not self.callbacks.deliver(identity, outcome):
                return 404, {"error": f"no job waits for a callback with identity '{identity}' (unknown, timed out, or called back already)"}
            return 200, {"identity": identity, "accepted": True}

        return handle

    async def stop(self) -> None:
        self.callbacks.close(f"the callback listener on port {self.spec.port} stopped")
        await super().stop()
