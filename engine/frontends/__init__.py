"""Front ends: turn a loaded flow file, in either form, into one `FlowSpec`.

    load_file(path) ──▶ LoadedDocument ──▶ (model-compose? lower it) ──▶ native dict ──▶ FlowSpec

The model-compose front end rewrites its keys into the native form and remembers, for each
native path, the path it came from, so every later error still points into the user's file.
"""

from __future__ import annotations

from ..loader import LoadedDocument
from .located import LocatedSpec, LoweredDocument
from .model_compose import MODEL_COMPOSE_KEYS, lower_model_compose
from .native import build_spec


def is_model_compose(doc: LoadedDocument) -> bool:
    return isinstance(doc.data, dict) and bool(MODEL_COMPOSE_KEYS & set(doc.data))


def to_flow_spec(doc: LoadedDocument) -> LocatedSpec:
    """Validate `doc` (either form) into a `FlowSpec` that knows where each part came from."""
    lowered = lower_model_compose(doc) if is_model_compose(doc) else LoweredDocument.identity(doc)
    return build_spec(lowered)


__all__ = ["LocatedSpec", "LoweredDocument", "is_model_compose", "to_flow_spec"]
