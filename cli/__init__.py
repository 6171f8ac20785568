"""flowctl: a workflow DAG engine for serving AI model pipelines.

    >>> from flowctl import load_flow
    >>> flow = load_flow("flows/vllm_chat.yml")        # doctest: +SKIP
    >>> print(to_mermaid(flow))                        # doctest: +SKIP
"""

from __future__ import annotations

from .engine.errors import (
    FlowctlError,
    FlowError,
    InputError,
    RunError,
    ServiceError,
    TemplateError,
    UpstreamError,
)
from .engine.export import to_mermaid
from .engine.flow import load_flow, load_flow_text

__version__ = "0.1.0"

__all__ = [
    "FlowError",
    "FlowctlError",
    "InputError",
    "RunError",
    "ServiceError",
    "TemplateError",
    "UpstreamError",
    "__version__",
    "load_flow",
    "load_flow_text",
    "to_mermaid",
]
