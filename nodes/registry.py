"""Node types by their `type:` name. Adding a node type is one module plus one line here: each
spec class says its own `type:` name (its `Literal`) and what the compiler needs to know
(`nodes/base.py`), so nothing else names node types.

    >>> spec_class("http-stream").__name__
    'HttpStreamSpec'
    >>> [name for name in NODE_TYPES if spec_class(name).kind.value == "service"]
    ['env-setup', 'process-start', 'tunnel', 'http-callback', 'http-trigger']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from .base import NodeSpecBase, RunNode, ServiceNode
from .command import CommandNode, CommandSpec
from .env_setup import EnvSetupNode, EnvSetupSpec
from .hook import HookNode, HookSpec
from .http_callback import HttpCallbackNode, HttpCallbackSpec
from .http_stream import HttpStreamNode, HttpStreamSpec
from .http_trigger import HttpTriggerNode, HttpTriggerSpec
from .loop import LoopNode, LoopSpec
from .map import MapNode, MapSpec
from .pause import PauseNode, PauseSpec
from .process_start import ProcessStartSpec
from .replica_set import process_start_service
from .sse_sink import SseSinkNode, SseSinkSpec
from .switch import SwitchNode, SwitchSpec
from .tunnel import TunnelNode, TunnelSpec
from .value import ValueNode, ValueSpec

#: (spec, behaviour) of every node type: the one list to extend
_TYPES: tuple[tuple[type[NodeSpecBase], Callable[[Any], Any]], ...] = (
    (EnvSetupSpec, EnvSetupNode),
    (ProcessStartSpec, process_start_service),
    (HttpStreamSpec, HttpStreamNode),
    (SseSinkSpec, SseSinkNode),
    (ValueSpec, ValueNode),
    (CommandSpec, CommandNode),
    (SwitchSpec, SwitchNode),
    (MapSpec, MapNode),
    (LoopSpec, LoopNode),
    (TunnelSpec, TunnelNode),
    (PauseSpec, PauseNode),
    (HookSpec, HookNode),
    (HttpCallbackSpec, HttpCallbackNode),
    (HttpTriggerSpec, HttpTriggerNode),
)

NODE_TYPES: dict[str, tuple[type[NodeSpecBase], Callable[[Any], Any]]] = {spec.type_name(): (spec, node) for spec, node in _TYPES}

if TYPE_CHECKING:
    NodeSpec = NodeSpecBase
else:
    #: any node's spec, told apart by `type:` (what FlowSpec's `nodes:` holds)
    NodeSpec = Annotated[Union[tuple(spec for spec, _ in _TYPES)], Field(discriminator="type")]  # noqa: UP007
    # a map's per-item node, a loop's body and a hook's body are any node spec: resolve their forward
    # references now the union exists
    MapSpec.model_rebuild(_types_namespace={"NodeSpec": NodeSpec})
    LoopSpec.model_rebuild(_types_namespace={"NodeSpec": NodeSpec})
    HookSpec.model_rebuild(_types_namespace={"NodeSpec": NodeSpec})


def spec_class(type_name: str) -> type[NodeSpecBase]:
    return NODE_TYPES[type_name][0]


def create_service(spec: NodeSpecBase) -> ServiceNode:
    """A fresh behaviour object for a service node's `spec`."""
    node: ServiceNode = NODE_TYPES[spec.type][1](spec)
    return node


def create_run_node(spec: NodeSpecBase) -> RunNode:
    """A fresh behaviour object for a per-run node's `spec`."""
    node: RunNode = NODE_TYPES[spec.type][1](spec)
    return node
