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
  Two different explicit types, or two different defaults, raise `TemplateError`; a
  refinement of a type is the same type (`text` and `select/a,b` give the select).
- The whole `as` clause is kept (`spec`): a `select`'s options become the schema's `enum`
  (and a value outside them a 422 naming them), `T[]` an `array` of `T`, a media type a
  string carrying its MIME type. `@(description ...)` becomes the input's description.
- A reference read only as a fallback (`${input.a | ${input.b}}`) does not make `b` required.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import CastError, InputError, TemplateError
from .ast import NO_DEFAULT, STREAM_TYPES, Reference, value_type
from .cast import cast, caster_for_spec
from .types import TypeSpec


@dataclass(frozen=True)
class InferredInput:
    """One input of a workflow: its name, type, default (`NO_DEFAULT` if none), and
    whether a run must give it."""

    name: str
    type: str
    default: Any = NO_DEFAULT
    required: bool = True
    #: the whole `as` clause (options, list item type, media type), when there was one
    spec: TypeSpec | None = None
    description: str | None = None

    def cast(self, value: Any) -> Any:
        """`value` as this input's type (and options); raises `CastError`."""
        if self.spec is not None and self.spec.value_type == self.type:
            return caster_for_spec(self.spec)(value, f"input.{self.name}")
        return cast(value, self.type, f"input.{self.name}")


@dataclass
class _Draft:
    name: str
    type: str | None = None  # from an explicit `as` on the input itself
    implied: str | None = None  # from a default or a deeper path
    default: Any = NO_DEFAULT
    optional: bool = False
    type_ref: Reference | None = None
    default_ref: Reference | None = None
    spec: TypeSpec | None = None
    description: str | None = None


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
        if ref.has_default or ref.optional:
            draft.optional = True
        if draft.description is None:
            draft.description = ref.annotation("description")
        if len(ref.path) > 1:
            draft.implied = draft.implied or ("list" if isinstance(ref.path[1], int) else "object")
            continue
        if ref.type is not None:
            _merge_type(draft, ref)
        if ref.has_default and ref.fallback is None:
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


def _merge_type(draft: _Draft, ref: Reference) -> None:
    """Take `ref`'s type for the input, unless it conflicts with the one already taken. A
    plain type and a refinement of it (`text` and `select/a,b`) agree: the refinement stays."""
    extra = ref.spec if ref.spec is not None and not ref.spec.is_plain else None
    ref_type = value_type(ref.type)
    if draft.type is None:
        draft.type, draft.type_ref, draft.spec = ref_type, ref, extra
        return
    if draft.type == ref_type and (extra is None or draft.spec is None or draft.spec == extra):
        if draft.spec is None and extra is not None:
            draft.spec, draft.type_ref = extra, ref
        return
    written = ref.spec.text if ref.spec else ref_type
    before = draft.spec.text if draft.spec else draft.type
    raise TemplateError(
        f"input '{draft.name}' is used as {before} in {draft.type_ref.text} "  # type: ignore[union-attr]
        f"and as {written} in {ref.text}",
        template=ref.text,
        hint="give every use of an input the same type, or declare the input",
    )


def _finish(draft: _Draft) -> InferredInput:
    type_name = draft.type or draft.implied or "text"
    default = draft.default
    spec = draft.spec if draft.type == type_name else None
    result = InferredInput(draft.name, type_name, default, required=not draft.optional, spec=spec, description=draft.description)
    if default is not NO_DEFAULT and default is not None and type_name not in STREAM_TYPES:
        try:
            default = result.cast(default)
        except CastError:
            ref = draft.default_ref
            raise TemplateError(
                f"the default {default!r} of input '{draft.name}' is not a valid {spec.text if spec else type_name}",
                template=ref.text if ref else None,
            ) from None
        result = InferredInput(draft.name, type_name, default, required=result.required, spec=spec, description=draft.description)
    return result


_SCHEMA_TYPES: dict[str, str | None] = {
    "text": "string",
    "base64": "string",
    "any": None,
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
        prop = _schema_for(spec.type, spec.spec)
        if spec.description:
            prop["description"] = spec.description
        if spec.default is not NO_DEFAULT:
            prop["default"] = spec.default
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name, spec in inputs.items() if spec.required],
        "additionalProperties": True,
    }


def _schema_for(type_name: str, spec: TypeSpec | None) -> dict[str, Any]:
    if spec is not None and spec.is_list:
        return {"type": "array", "items": _schema_for(spec.item.value_type, spec.item)}
    prop: dict[str, Any] = {}
    schema_type = _SCHEMA_TYPES.get(type_name)
    if schema_type is not None:
        prop["type"] = schema_type
    if spec is None:
        return prop
    if spec.options is not None:
        prop["enum"] = list(spec.options)
    if spec.media_type is not None:
        # a media input is text: a URL, a data URI, or base64 (what a JSON body can carry)
        prop["type"] = "string"
        prop["contentMediaType"] = spec.media_type
        prop["x-flowctl-media"] = spec.name
    if spec.name == "base64":
        prop["contentEncoding"] = "base64"
    return prop


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
            result[name] = spec.cast(value)
        except CastError as exc:
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise InputError(name, f"{shown} is not {exc.expected}") from None
    return result
