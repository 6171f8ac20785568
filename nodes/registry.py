"""Node types by their `type:` name. Adding a node type is one module plus one line here."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from .base import NodeKind, NodeSpecBase
from .env_setup import EnvSetupNode, EnvSetupSpec
from .http_stream import HttpStreamNode, HttpStreamSpec
from .process_start import ProcessStartNode, ProcessStartSpec
from .sse_sink import SseSinkNode, SseSinkSpec

NODE_TYPES: dict[str, tuple[type[NodeSpecBase], type]] = {
    "env-setup": (EnvSetupSpec, EnvSetupNode),
    "process-start": (ProcessStartSpec, ProcessStartNode),
    "http-stream": (HttpStreamSpec, HttpStreamNode),
    "sse-sink": (SseSinkSpec, SseSinkNode),
}

NodeSpec = Annotated[
    Union[EnvSetupSpec, ProcessStartSpec, HttpStreamSpec, SseSinkSpec],
    Field(discriminator="type"),
]


def spec_class(type_name: str) -> type[NodeSpecBase]:
    return NODE_TYPES[type_name][0]


def create_node(spec: NodeSpecBase) -> Any:
    """A fresh behaviour object for `spec`."""
    return NODE_TYPES[spec.type][1](spec)


def is_service(spec: NodeSpecBase) -> bool:
    return spec.kind is NodeKind.SERVICE
