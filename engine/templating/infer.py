"""Infer a workflow's inputs from its `${input.x as T | d}` references, and check a run's
input against them.

    >>> from flowctl.engine.templating import parse
    >>> refs = parse("${input.prompt} at ${input.temperature as number | 0.7}").references
    >>> inputs = infer_inputs(refs)
    >>> inputs["prompt"].required, inputs["temperature"].default
    (True, 0.7)
    >>> validate_inputs(inputs, {"prompt": "hi"})
    {'prompt': 'hi', 'temperature': 0.7}

Rules:

- The input's name is the first step after `input` (`${input.prompt}` → `prompt`).
  `${input}` alone, or `${input[0]}`, names no input and is ignored.
- Its type is the `as` type. Without one it comes from the default's YAML type (a number
  default → `number`, `true` → `boolean`, a list → `list`, a mapping → `object`, text →
  `text`), else `text`. A deeper path (`${input.cfg.model}`) makes the input an `object`
  (`list` for `${input.xs[0]}`), and the `as` type there belongs to the nested value.
- It is required unless some reference to it has a default. The default is cast to the
  type (a null default stays None). A deeper path's default covers the nested value only,
  so it makes the input optional but gives it no default of its own.
- Referenced twice: an explicit type wins over an inferred one and a default over none.
  Two different explicit types, or two different defaults, raise `TemplateError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CastError, InputError, TemplateError
from .ast import NO_DEFAULT, STREAM_TYPES, Reference, value_type
from .cast import cast


@dataclass(frozen=True)
class InferredInput:
    """One input of a workflow: its name, type, default (`NO_DEFAULT` if none), and
    whether a run must give it."""

    name: str
    type: str
    default: Any = NO_DEFAULT
    required: bool = True


@dataclass
class _Draft:
    name: str
    type: str | None = None  # from an explicit `as` on the input itself
    implied: str | None = None  # from a default or a deeper path
    default: Any = NO_DEFAULT
    optional: bool = False
    type_ref: Reference | None = None
    default_ref: Reference | None = None


def _type_of_default(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return "text"


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def infer_inputs(references: Iterable[Reference]) -> dict[str, InferredInput]:
    """The inputs named by `input` references, in first-seen order."""
    drafts: dict[str, _Draft] = {}
    for ref in references:
        if ref.source != "input" or not ref.path or not isinstance(ref.path[0], str):
            continue
        name = ref.path[0]
        draft = drafts.setdefault(name, _Draft(name))
        if ref.has_default:
            draft.optional = True
        if len(ref.path) > 1:
            draft.implied = draft.implied or ("list" if isinstance(ref.path[1], int) else "object")
            continue
        ref_type = value_type(ref.type)
        if ref_type is not None:
            if draft.type is not None and draft.type != ref_type:
                raise TemplateError(
                    f"input '{name}' is used as {draft.type} in {draft.type_ref.text} "  # type: ignore[union-attr]
                    f"and as {ref_type} in {ref.text}",
                    template=ref.text,
                    hint="give every use of an input the same type, or declare the input",
                )
            draft.type, draft.type_ref = ref_type, ref
        if ref.has_default:
            if draft.default_ref is not None and not _same(draft.default, ref.default):
                raise TemplateError(
                    f"input '{name}' has the default {draft.default!r} in {draft.default_ref.text} "
                    f"and {ref.default!r} in {ref.text}",
                    template=ref.text,
                    hint="give every use of an input the same default, or declare the input",
                )
            draft.default, draft.default_ref = ref.default, ref
            draft.implied = _type_of_default(ref.default) or draft.implied
    return {name: _finish(d) for name, d in drafts.items()}


def _finish(draft: _Draft) -> InferredInput:
    type_name = draft.type or draft.implied or "text"
    default = draft.default
    if default is not NO_DEFAULT and default is not None and type_name not in STREAM_TYPES:
        try:
            default = cast(default, type_name, f"input.{draft.name}")
        except CastError:
            ref = draft.default_ref
            raise TemplateError(
                f"the default {default!r} of input '{draft.name}' is not a valid {type_name}",
                template=ref.text if ref else None,
            ) from None
    return InferredInput(draft.name, type_name, default, required=not draft.optional)


_SCHEMA_TYPES: dict[str, str | None] = {
    "text": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "json": None,
    "object": "object",
    "list": "array",
    "stream/text": "string",
    "stream/json": None,
}


def json_schema_for_inputs(inputs: Mapping[str, InferredInput]) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) object for a run's input. Extra fields are allowed."""
    properties: dict[str, Any] = {}
    for name, spec in inputs.items():
        prop: dict[str, Any] = {}
        schema_type = _SCHEMA_TYPES.get(spec.type)
        if schema_type is not None:
            prop["type"] = schema_type
        if spec.default is not NO_DEFAULT:
            prop["default"] = spec.default
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name, spec in inputs.items() if spec.required],
        "additionalProperties": True,
    }


def validate_inputs(inputs: Mapping[str, InferredInput], given: Mapping[str, Any]) -> dict[str, Any]:
    """The run's input, cast to the inferred types, with defaults filled in.

    Raises `InputError` naming the field for a missing required input or a value that
    does not cast. A null counts as not given, except for `json` inputs. Fields the
    workflow does not know are kept as they are (a front end may use them, and a
    template that names them still works)."""
    result = dict(given)
    for name, spec in inputs.items():
        value = given.get(name, NO_DEFAULT)
        if value is NO_DEFAULT or (value is None and spec.type != "json"):
            if spec.default is not NO_DEFAULT:
                result[name] = spec.default
            elif spec.required:
                raise InputError(name, "is required but was not given", hint=f"expected a {spec.type}")
            continue
        if spec.type in STREAM_TYPES:
            continue
        try:
            result[name] = cast(value, spec.type, f"input.{name}")
        except CastError:
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise InputError(name, f"{shown} is not a valid {spec.type}") from None
    return result
