"""The native front end: validate a native-form dict into a `FlowSpec`.

pydantic does the checking; this module turns its errors into `FILE:LINE:COL: message`
with a hint a user can act on (the close match for a misspelt key or node type).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from ...nodes.registry import NODE_TYPES, spec_class
from ..errors import FlowError, FlowErrors
from ..spec import FlowSpec
from .located import LocatedSpec, LoweredDocument


def build_spec(lowered: LoweredDocument) -> LocatedSpec:
    data = lowered.data
    if not isinstance(data, dict):
        raise FlowError("a flow file must be a mapping of keys (nodes:, workflows:, ...)", location=lowered.locate(()))
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        errors = [_flow_error(lowered, error) for error in exc.errors()]
        raise FlowErrors(_dedupe(errors)) from None
    return LocatedSpec(spec=spec, document=lowered)


def _dedupe(errors: list[FlowError]) -> list[FlowError]:
    seen: set[str] = set()
    unique = []
    for error in errors:
        text = str(error)
        if text not in seen:
            seen.add(text)
            unique.append(error)
    return unique


def _flow_error(lowered: LoweredDocument, error: Any) -> FlowError:
    path = _data_path(lowered.data, error["loc"])
    kind = error["type"]
    where = _describe(path, lowered.data)
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = _allowed_keys(path[:-1], lowered.data)
        match = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{match[0]}'?" if match else ("allowed keys: " + ", ".join(sorted(allowed)) if allowed else None)
        return FlowError(f"unknown key '{key}'{where}", location=lowered.locate(path, key=True), hint=hint)
    if kind == "missing":
        return FlowError(f"missing required key '{path[-1]}'{_describe(path[:-1], lowered.data)}", location=lowered.locate(path[:-1], key=True), hint=f"add `{path[-1]}:`")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        given = error.get("ctx", {}).get("tag") or "(none)"
        match = difflib.get_close_matches(str(given), list(NODE_TYPES), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "node types: " + ", ".join(NODE_TYPES)
        type_path = (*path, "type")
        return FlowError(f"unknown node type '{given}'{where}", location=lowered.locate(type_path), hint=hint)
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return FlowError(f"{message[0].lower()}{message[1:]}{where}", location=lowered.locate(path))


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's `loc` with the union/discriminator tags it inserts dropped."""
    path: list[Any] = []
    current = data
    for index, item in enumerate(loc):
        if isinstance(current, dict) and item in current:
            path.append(item)
            current = current[item]
        elif isinstance(current, list) and isinstance(item, int) and 0 <= item < len(current):
            path.append(item)
            current = current[item]
        elif index == len(loc) - 1 and not (isinstance(current, dict) and isinstance(item, str) and _is_tag(item)):
            path.append(item)  # a missing or unknown key: it is the last item
            current = None
        else:
            continue  # a tag such as 'process-start' or 'list[str]'
    return tuple(path)


def _is_tag(item: str) -> bool:
    return item in NODE_TYPES or "[" in item or item in {"str", "int", "float", "bool", "dict", "list"}


def _describe(path: tuple[Any, ...], data: Any) -> str:
    if len(path) >= 2 and path[0] == "nodes":
        node = data.get("nodes", {}).get(path[1]) if isinstance(data, dict) else None
        node_type = node.get("type") if isinstance(node, dict) else None
        return f" in node '{path[1]}'" + (f" ({node_type})" if node_type else "")
    if len(path) >= 2 and path[0] == "workflows":
        return f" in workflow '{path[1]}'"
    if path and path[0] == "server":
        return " in server"
    return ""


def _allowed_keys(path: tuple[Any, ...], data: Any) -> list[str]:
    model = _model_at(path, data)
    if model is None:
        return []
    return [name for name, field in model.model_fields.items()]


def _model_at(path: tuple[Any, ...], data: Any) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `path`, for did-you-mean hints."""
    if path and path[0] == "nodes" and len(path) >= 2:
        node = data.get("nodes", {}).get(path[1]) if isinstance(data, dict) else None
        type_name = node.get("type") if isinstance(node, dict) else None
        if type_name not in NODE_TYPES:
            return None
        annotation: Any = spec_class(type_name)
        rest = path[2:]
    else:
        annotation, rest = FlowSpec, path
    for step in rest:
        annotation = _unwrap_optional(annotation)
        origin = typing.get_origin(annotation)
        if origin in (dict, list):
            annotation = typing.get_args(annotation)[-1]
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = annotation.model_fields.get(str(step))
        if field is None:
            return None
        annotation = field.annotation
    annotation = _unwrap_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap_optional(annotation: Any) -> Any:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
