"""What the two listener service nodes (`http-callback`, `http-trigger`) have in common: where
they listen, and templates over the incoming request (`${request.body...}`,
`${request.query...}`, `${request.headers...}`), checked when the flow loads and rendered
per request.

    >>> RequestTemplate.of("${request.body.task_id}").render({"body": {"task_id": 7}, "query": {}, "headers": {}})
    7
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from ..engine.errors import TemplateError
from ..engine.templating import CompiledValue, compile_value
from .base import NodeKind, NodeSpecBase

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
