"""Evaluate parsed templates against a scope. Parse once, render many times.

    >>> t = parse("${response[].choices[0].delta.content}")
    >>> t.render({"response[]": {"choices": [{"delta": {"content": "Hi"}}]}})
    'Hi'
    >>> parse("${input.n as integer}-${input.tag | none}").render({"input": {"n": "7"}})
    '7-none'

The scope maps a source name (`input`, `env`, `nodes`, `response`, `response[]`, `run`,
`request`) to its value. A path step `.name`/`["key"]` reads a mapping; `[n]` reads a list
or tuple (negative from the end). Nothing else is stepped into: a string is not indexed.

A `[*]` step reads the rest of the path from every item of a list and gives the list of
results (an item that lacks it gives None): `${response.data[*].url}`.

Missing values: a path that is not there, with no default, raises `MissingValueError`
naming the full path (`input.prompt`). A value that is there but null counts as present
only when there is no `as` type or the type is `json`; for every other type a null is
treated as missing (so the default applies, or the error is raised). A null default
(`| null`) is used as is, uncast: it says "nothing" on purpose. A default that is itself a
`${...}` is a fallback: it is read (and cast to the outer type) only when the value is missing.

A node the scheduler skipped is `SKIPPED` in `nodes`: any path into it reads as its default,
or null without one (not an error: skipping is a decision the flow made, see docs/dag.md).

    >>> parse("${nodes.a.output.text | none}").render({"nodes": {"a": SKIPPED}})
    'none'
    >>> parse("${nodes.a.output.text as text}").render({"nodes": {"a": SKIPPED}}) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from ..errors import CastError, MissingValueError, TemplateError
from .ast import NO_DEFAULT, STREAM_TYPES, WILDCARD, Expr, Part, Reference, Step, Text, format_path
from .cast import caster_for_spec, to_text
from .parser import parse_parts


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING: Final = _Sentinel("MISSING")  # a path that is not there (internal to resolving)
SKIPPED: Final = _Sentinel("SKIPPED")  # what `nodes.<id>` holds for a node that did not run
_RAISE: Final = _Sentinel("RAISE")  # on_missing: raise MissingValueError

Resolver = Callable[[Mapping[str, Any]], Any]


def _step(cur: Any, seg: Step) -> Any:
    """One path step on anything but a plain dict or list (the slow, general case)."""
    if seg is WILDCARD:
        return MISSING
    if isinstance(seg, int):
        if isinstance(cur, (list, tuple)):
            try:
                return cur[seg]
            except IndexError:
                return MISSING
        return MISSING
    if isinstance(cur, Mapping):
        try:
            return cur[seg]
        except KeyError:
            return MISSING
    return MISSING


def _walk(cur: Any, path: tuple[Step, ...]) -> Any:
    """The value at `path` inside `cur`, or MISSING; `[*]` maps the rest over a list."""
    for index, seg in enumerate(path):
        if seg is WILDCARD:
            if not isinstance(cur, (list, tuple)):
                return MISSING
            rest = path[index + 1 :]
            results = [_walk(item, rest) for item in cur]
            return [None if value is MISSING else value for value in results]
        cur = _step(cur, seg)
        if cur is MISSING:
            return MISSING
    return cur


def path_walker(path: tuple[Step, ...]) -> Callable[[Any], Any]:
    """A function: value -> the value at `path` inside it, or MISSING. No exceptions on the
    happy path; plain dicts and lists take the fast branch (`[*]` the general one)."""
    if WILDCARD in path:
        return lambda cur: _walk(cur, path)
    dict_ = dict
    list_ = list
    int_ = int
    missing = MISSING

    def walk(cur: Any) -> Any:
        for seg in path:
            cls = cur.__class__
            if cls is dict_:
                cur = cur.get(seg, missing)
                if cur is missing:
                    return missing
            elif cls is list_:
                if seg.__class__ is not int_:
                    return missing
                try:
                    cur = cur[seg]
                except IndexError:
                    return missing
            else:
                cur = _step(cur, seg)
                if cur is missing:
                    return missing
        return cur

    return walk


def _resolver(source: str, path: tuple[Step, ...]) -> Resolver:
    """A function: scope -> the value at `source` + `path`, or MISSING."""
    missing = MISSING

    if not path:

        def resolve_source(scope: Mapping[str, Any]) -> Any:
            try:
                return scope[source]
            except KeyError:
                return missing

        return resolve_source

    walk = path_walker(path)

    def resolve(scope: Mapping[str, Any]) -> Any:
        try:
            cur = scope[source]
        except KeyError:
            return missing
        return walk(cur)

    return resolve


def _missing_hint(reference: Reference, scope: Mapping[str, Any]) -> str | None:
    """Say which step of the path is missing, and what is there instead."""
    if reference.source not in scope:
        return f"there is no '{reference.source}' here"
    cur = scope[reference.source]
    for i, seg in enumerate(reference.path):
        nxt = _step(cur, seg)
        if nxt is MISSING:
            where = format_path(reference.source, reference.path[:i])
            if isinstance(seg, int):
                if isinstance(cur, (list, tuple)):
                    return f"{where} has {len(cur)} item(s)"
                return f"{where} is not a list"
            if isinstance(cur, Mapping):
                if reference.source == "env" or not cur:
                    return f"{where} has no '{seg}'"
                keys = [str(k) for k in list(cur)[:8]]
                more = ", ..." if len(cur) > 8 else ""
                return f"{where} has no '{seg}' (it has: {', '.join(keys)}{more})"
            return f"{where} is {type(cur).__name__}, not a mapping"
        cur = nxt
    if cur is None:
        return f"{reference.dotted} is null"
    return None


def _skipped(scope: Mapping[str, Any], node: str | int) -> bool:
    nodes = scope.get("nodes")
    return isinstance(nodes, Mapping) and nodes.get(node) is SKIPPED


def _evaluator(expr: Expr, template: str) -> Callable[[Mapping[str, Any], Any], Any]:
    """A function (scope, on_missing) -> the typed value of one `${...}`.

    `on_missing` is `_RAISE` to raise `MissingValueError`, or the value to return instead."""
    ref = expr.reference
    resolve = _resolver(ref.source, ref.path)
    dotted = ref.dotted
    type_name = ref.type
    missing = MISSING
    null_is_missing = type_name is not None and type_name != "json"
    caster = caster_for_spec(ref.spec) if ref.spec is not None else None
    has_default = ref.default is not NO_DEFAULT
    default = ref.default
    fallback = _evaluator(Expr(ref.fallback, expr.start, expr.end), template) if ref.fallback is not None else None
    default_is_lazy = False  # a stream default is cast on each render (a fresh iterator)
    if has_default and fallback is None and default is not None and caster is not None:
        if type_name in STREAM_TYPES:
            default_is_lazy = True
        else:
            try:
                default = caster(default, dotted)
            except CastError:
                raise TemplateError(
                    f"the default {ref.default!r} is not a valid {type_name}",
                    template=template,
                    offset=expr.default_at,
                ) from None

    reads_node = ref.source == "nodes" and bool(ref.path)

    def on_absent(scope: Mapping[str, Any], on_missing: Any) -> Any:
        if fallback is not None:
            value = fallback(scope, on_missing)
            if value is MISSING or value is on_missing or caster is None or value is None:
                return value
            return caster(value, dotted)
        if has_default:
            return caster(default, dotted) if default_is_lazy else default  # type: ignore[misc]
        if reads_node and isinstance(ref.path[0], str) and _skipped(scope, ref.path[0]):
            return None
        if on_missing is not _RAISE:
            return on_missing
        raise MissingValueError(dotted, hint=_missing_hint(ref, scope))

    if caster is None:

        def evaluate_plain(scope: Mapping[str, Any], on_missing: Any) -> Any:
            value = resolve(scope)
            if value is missing:
                return on_absent(scope, on_missing)
            return value

        return evaluate_plain

    def evaluate_typed(scope: Mapping[str, Any], on_missing: Any) -> Any:
        value = resolve(scope)
        if value is missing or (value is None and null_is_missing):
            return on_absent(scope, on_missing)
        return caster(value, dotted)

    return evaluate_typed


def _with_fallbacks(reference: Reference) -> tuple[Reference, ...]:
    """A reference and the fallbacks in its default (`${a | ${b | ${c}}}` gives a, b, c)."""
    chain = []
    current: Reference | None = reference
    while current is not None:
        chain.append(current)
        current = current.fallback
    return tuple(chain)


class Template:
    """One parsed string. `render(scope)` gives the value:

    - `is_literal`: no `${...}`; render gives the text (with `$${` read as `${`).
    - `is_whole`: the string is exactly one `${...}`; render gives the typed value.
    - otherwise each `${...}` is interpolated as text (see `cast.to_text`).
    """

    __slots__ = ("text", "parts", "references", "is_literal", "is_whole", "_whole", "_pieces", "_literal")

    def __init__(self, text: str, parts: tuple[Part, ...]) -> None:
        self.text = text
        self.parts = parts
        exprs = [p for p in parts if isinstance(p, Expr)]
        self.references: tuple[Reference, ...] = tuple(r for e in exprs for r in _with_fallbacks(e.reference))
        self.is_literal = not exprs
        self.is_whole = len(parts) == 1 and bool(exprs)
        self._literal: str | None = None
        self._whole: Callable[[Mapping[str, Any], Any], Any] | None = None
        self._pieces: tuple[str | Callable[[Mapping[str, Any], Any], Any], ...] = ()
        if self.is_literal:
            self._literal = "".join(p.value for p in parts if isinstance(p, Text))
        elif self.is_whole:
            self._whole = _evaluator(exprs[0], text)
        else:
            for e in exprs:
                if e.reference.type in STREAM_TYPES:
                    raise TemplateError(
                        f"'{e.reference.type}' can only be used when the template is the whole value",
                        template=text,
                        offset=e.start,
                        hint="a stream cannot be put inside a longer string",
                    )
            self._pieces = tuple(p.value if isinstance(p, Text) else _evaluator(p, text) for p in parts)

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The value of this template in `scope`; raises `MissingValueError` / `CastError`."""
        whole = self._whole
        if whole is not None:
            return whole(scope, _RAISE)
        if self._literal is not None:
            return self._literal
        pieces = self._pieces
        return "".join([p if p.__class__ is str else to_text(p(scope, _RAISE)) for p in pieces])  # type: ignore

    def render_each(self, scope: Mapping[str, Any], encode: Callable[[Expr, str], str]) -> Any:
        """Like `render`, but each `${...}` interpolated into a longer string passes through
        `encode(expr, text)` (a URL escapes it for where it sits). A whole-value or literal
        template renders as `render` does."""
        if not self._pieces:
            return self.render(scope)
        return "".join([p if p.__class__ is str else encode(part, to_text(p(scope, _RAISE))) for part, p in zip(self.parts, self._pieces, strict=True)])  # type: ignore

    def plain_path(self) -> tuple[str, tuple[Step, ...]] | None:
        """(source, path) when this template is one reference with no `as` type and no
        default (its value is what sits at that path, as is), else None. A reader of many
        values (one per streamed chunk) can then walk the path itself (`path_walker`)."""
        if not self.is_whole:
            return None
        ref = self.references[0]
        if ref.type is not None or ref.has_default:
            return None
        return ref.source, ref.path

    def render_or(self, scope: Mapping[str, Any], fallback: Any) -> Any:
        """Like `render`, but return `fallback` instead of raising when a referenced value
        is missing and has no default (cast errors still raise). For per-chunk outputs
        where a chunk that lacks the path is skipped, without an exception per chunk."""
        whole = self._whole
        if whole is not None:
            return whole(scope, fallback)
        if self._literal is not None:
            return self._literal
        out: list[str] = []
        for p in self._pieces:
            if p.__class__ is str:
                out.append(p)
                continue
            value = p(scope, MISSING)  # type: ignore[operator]
            if value is MISSING:
                return fallback
            out.append(to_text(value))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def parse(text: str) -> Template:
    """Parse a string into a `Template`; raise `TemplateError` (with `template` and
    `offset`) when it is not valid."""
    return Template(text, parse_parts(text))
