"""Rewrite templates: give a source a value, or move it to another source, before anything runs.

A front end that lowers another tool's flow has templates in that tool's vocabulary: a
model-compose action reads `${input.text}`, where `input` is whatever the calling job passed.
`bind` substitutes such a source by the tree it stands for, statically, so the lowered node
reads the real source directly and no extra node is needed:

    >>> bind({"content": "${input.text}"}, {("input",): {"text": "${nodes.quote.output.quote}"}})
    {'content': '${nodes.quote.output.quote}'}
    >>> bind("Say: ${input.text as text}", {("input",): {"text": "hi ${input.name}"}})
    'Say: hi ${input.name}'
    >>> bind("${input.n as integer}", {("input",): {"n": "42"}})
    42

A binding is keyed by a source and the first steps of a path (`("jobs", "a", "output")`) and
holds a tree whose strings are templates in the *target* vocabulary. A reference that no
binding covers is kept as written. When a substitution cannot be written as one template
(a path that steps into a literal, a structure interpolated into a longer string, a type that
does not survive) `Unbindable` says why, and the caller materialises the value another way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..errors import CastError, TemplateError
from .ast import NO_DEFAULT, SOURCES, Expr, Reference, Step, Text, format_path
from .cast import caster_for_spec, to_text
from .parser import parse_parts
from .types import TypeSpec

#: a binding key: the source, then the path steps it covers
BindingKey = tuple[str | int, ...]


class Unbindable(ValueError):
    """A reference could not be substituted into one template; the message says why."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def unparse(reference: Reference) -> str:
    """A reference written back as template text (type, default, annotations included)."""
    out = ["${", format_path(reference.source, reference.path)]
    if reference.spec is not None:
        out.append(f" as {reference.spec.text}")
    if reference.fallback is not None:
        out.append(" | " + unparse(reference.fallback))
    elif reference.has_default:
        out.append(" | " + json.dumps(reference.default, ensure_ascii=False))
    for name, value in reference.annotations:
        out.append(f" @({name} {value})")
    out.append("}")
    return "".join(out)


def escape(text: str) -> str:
    """Literal text as template text: every `${` written `$${`."""
    return text.replace("${", "$${")


def references_in(value: Any, sources: Sequence[str] = SOURCES) -> list[Reference]:
    """Every reference in a tree of templates (fallbacks included), in order."""
    found: list[Reference] = []
    if isinstance(value, str):
        for part in parse_parts(value, sources):
            if isinstance(part, Expr):
                ref: Reference | None = part.reference
                while ref is not None:
                    found.append(ref)
                    ref = ref.fallback
    elif isinstance(value, Mapping):
        for item in value.values():
            found += references_in(item, sources)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found += references_in(item, sources)
    return found


def bind(value: Any, bindings: Mapping[BindingKey, Any], sources: Sequence[str] = SOURCES) -> Any:
    """`value` with every reference a binding covers replaced by what it is bound to.

    `sources` are the names the templates in `value` may use (their vocabulary); the bound
    trees are inserted as they are. Raises `TemplateError` for a template that does not parse
    and `Unbindable` for a substitution that cannot be written as a template; either carries
    `.value_path`, where in `value` it happened."""
    return _bind_tree(value, bindings, sources, ())


def _bind_tree(value: Any, bindings: Mapping[BindingKey, Any], sources: Sequence[str], at: tuple[str | int, ...]) -> Any:
    if isinstance(value, str):
        try:
            return _bind_text(value, bindings, sources)
        except (TemplateError, Unbindable) as exc:
            if getattr(exc, "value_path", None) is None:
                setattr(exc, "value_path", at)  # noqa: B010 (the errors are shared; the path is this walk's)
            raise
    if isinstance(value, Mapping):
        return {key: _bind_tree(item, bindings, sources, (*at, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_bind_tree(item, bindings, sources, (*at, index)) for index, item in enumerate(value)]
    return value


class _Literal:
    """A bound value that is not a template: a scalar, plain text or a container."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _bind_text(text: str, bindings: Mapping[BindingKey, Any], sources: Sequence[str]) -> Any:
    parts = parse_parts(text, sources)
    exprs = [part for part in parts if isinstance(part, Expr)]
    if not exprs:
        return text
    if len(parts) == 1:
        result = _resolve(exprs[0].reference, bindings, sources)
        if isinstance(result, Reference):
            return unparse(result)
        return result.value
    out: list[str] = []
    for part in parts:
        if isinstance(part, Text):
            out.append(escape(part.value))
            continue
        result = _resolve(part.reference, bindings, sources)
        if isinstance(result, Reference):
            out.append(unparse(result))
        elif isinstance(result.value, str):
            out.append(result.value)  # template text (or escaped literal text): spliced in
        elif isinstance(result.value, (dict, list)):
            raise Unbindable(f"'{part.reference.dotted}' is a structure; it cannot be put inside a longer string here")
        else:
            out.append(escape(to_text(result.value)))
    return "".join(out)


def _resolve(ref: Reference, bindings: Mapping[BindingKey, Any], sources: Sequence[str]) -> Reference | _Literal:
    """What `ref` becomes: a reference (rewritten or kept), or a literal/template tree."""
    fallback = ref.fallback
    if fallback is not None:
        bound = _resolve(fallback, bindings, sources)
        if not isinstance(bound, Reference):
            if bound.value is not None and not isinstance(bound.value, (str, int, float, bool)) or isinstance(bound.value, str) and "${" in bound.value:
                raise Unbindable(f"the fallback of '{ref.dotted}' is not one value or one reference")
            bound_default: Any = bound.value
        else:
            bound_default = replace(bound, optional=True)
        ref = replace(ref, default=bound_default)
    key = _binding_for(ref, bindings)
    if key is None:
        return ref
    tree = bindings[key]
    rest = ref.path[len(key) - 1 :]
    node, index = tree, 0
    while index < len(rest):
        step = rest[index]
        if isinstance(node, Mapping) and isinstance(step, str):
            if step not in node:
                if ref.fallback is not None:  # statically missing: the fallback is what is read
                    return replace(ref.fallback, spec=ref.spec or ref.fallback.spec, type=ref.type or ref.fallback.type, optional=False)
                if ref.has_default:
                    return _literal(ref, ref.default)
                names = ", ".join(str(name) for name in node) or "nothing"
                raise Unbindable(f"'{ref.dotted}': {format_path(ref.source, ref.path[: len(key) - 1 + index])} has no '{step}'", hint=f"it has: {names}")
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and -len(node) <= step < len(node):
            node = node[step]
        else:
            break
        index += 1
    remaining = rest[index:]
    if isinstance(node, str):
        inner_parts = parse_parts(node)
        inner = [part for part in inner_parts if isinstance(part, Expr)]
        if len(inner_parts) == 1 and inner:
            return _join(ref, inner[0].reference, remaining)
        if remaining:
            raise Unbindable(f"'{ref.dotted}': {format_path(ref.source, ref.path[: len(ref.path) - len(remaining)])} is text, it has no '{_step_text(remaining[0])}'")
        if not inner:
            text = inner_parts[0].value if inner_parts and isinstance(inner_parts[0], Text) else ""
            return _literal(ref, text)
        if ref.spec is not None and ref.type not in ("text", "any"):
            raise Unbindable(f"'{ref.dotted}' is text built from several values; it cannot be read as {ref.spec.text}")
        return _Literal(node)
    if remaining:
        what = type(node).__name__ if node is not None else "null"
        raise Unbindable(f"'{ref.dotted}': {format_path(ref.source, ref.path[: len(ref.path) - len(remaining)])} is {what}, it has no '{_step_text(remaining[0])}'")
    if isinstance(node, (Mapping, list)):
        if references_in(node):
            if ref.spec is not None and ref.type not in ("object", "list", "json", "any"):
                raise Unbindable(f"'{ref.dotted}' is a structure holding templates; it cannot be read as {ref.spec.text}")
            return _Literal(node)
    return _literal(ref, node)


def _binding_for(ref: Reference, bindings: Mapping[BindingKey, Any]) -> BindingKey | None:
    full = (ref.source, *ref.path)
    best: BindingKey | None = None
    for key in bindings:
        if full[: len(key)] == key and (best is None or len(key) > len(best)):
            best = key
    return best


def _join(outer: Reference, inner: Reference, remaining: tuple[Step, ...]) -> Reference:
    """`outer` (which read the bound template) rewritten to read what `inner` reads."""
    spec, type_name = outer.spec, outer.type
    if remaining:
        if inner.spec is not None and inner.type not in ("object", "list", "json", "any"):
            raise Unbindable(f"'{outer.dotted}' reads into {inner.text}, which is {inner.spec.text}")
    elif spec is None or (inner.spec is not None and (spec.is_plain and spec.value_type == inner.type or spec.name == "any" or _refines(inner.spec, spec))):
        spec, type_name = inner.spec, inner.type  # the inner type says as much or more
    elif spec.name == "base64" and inner.spec is not None and inner.spec.media_type is not None and not inner.spec.is_list:
        # a media input read as base64: still that media type (the UI offers a file), as base64
        text = inner.spec.text.split(";", 1)[0] + ";base64"
        spec, type_name = replace(inner.spec, format="base64", text=text), inner.type
    if outer.has_default:
        default = outer.default
    elif not remaining:
        default = inner.default
    elif isinstance(inner.default, Reference):
        # `${a | ${b}}` read at `.x` is `${a.x | ${b.x}}`: the fallback is the same kind of value
        moved = replace(inner.default, path=inner.default.path + remaining)
        default = replace(moved, text=unparse(moved))
    else:
        default = NO_DEFAULT
    annotations = inner.annotations + tuple(a for a in outer.annotations if a not in inner.annotations)
    path = inner.path + remaining
    text = unparse(Reference(inner.source, path, type_name, default, "", spec, annotations))
    return Reference(inner.source, path, type_name, default, text, spec, annotations, inner.optional or outer.optional)


def _refines(inner: TypeSpec, outer: TypeSpec) -> bool:
    """`inner` is `outer` with more said: `object[]/id,name` read back `as object[]` keeps its
    projection."""
    return inner.name == outer.name and inner.is_list == outer.is_list and not (outer.subtype or outer.attrs or outer.format)


def _literal(ref: Reference, value: Any) -> _Literal:
    """A literal bound to `ref`: cast to its type now (a bad literal is the author's error),
    its text escaped so that it stays literal inside a template."""
    if ref.spec is not None and value is not None:
        try:
            value = caster_for_spec(ref.spec)(value, ref.dotted)
        except CastError as exc:
            raise TemplateError(f"{exc.message} (bound to {ref.text})") from None
    return _Literal(_escape_tree(value))


def _escape_tree(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {key: _escape_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_tree(item) for item in value]
    return value


def _step_text(step: Step) -> str:
    return format_path("", (step,)).lstrip(".")


__all__ = ["BindingKey", "Unbindable", "bind", "escape", "references_in", "unparse"]
