"""Compile a YAML value tree (dicts, lists, scalars) with every string parsed as a template.

    >>> body = compile_value({"model": "${input.model | gpt-4o}", "stream": True})
    >>> body.render({"input": {}})
    {'model': 'gpt-4o', 'stream': True}

Only string values are templates; mapping keys are taken literally. The parts of the
tree without a `${...}` are built once and returned as they are on every render (not
copied). Any error, at compile or at render time, carries `.value_path`: where in the
tree it happened, e.g. `("headers", "Authorization")`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import TemplateError
from .ast import Reference
from .evaluate import Template, parse

ValuePath = tuple[str | int, ...]
_Render = Callable[[Mapping[str, Any]], Any]


class _Static:
    """Marks a subtree without references; holds its (unescaped) constant value."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class CompiledValue:
    """A value tree whose strings are parsed templates. `render(scope)` builds a new tree."""

    __slots__ = ("source", "references", "templates", "is_static", "_render", "_static")

    def __init__(self, source: Any) -> None:
        self.source = source
        templates: list[tuple[ValuePath, Template]] = []
        node = _compile(source, (), templates)
        self.templates: tuple[tuple[ValuePath, Template], ...] = tuple(templates)
        self.references: tuple[Reference, ...] = tuple(r for _, t in templates for r in t.references)
        self.is_static = isinstance(node, _Static)
        self._static = node.value if isinstance(node, _Static) else None
        self._render: _Render | None = None if isinstance(node, _Static) else node

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The tree with each template rendered. Errors carry `.value_path`."""
        if self._render is None:
            return self._static
        return self._render(scope)

    def errors(self) -> list[tuple[ValuePath, TemplateError]]:
        """Always empty: `compile_value` raises on the first error instead (see
        `find_template_errors` to collect them all)."""
        return []

    def __repr__(self) -> str:
        return f"CompiledValue({self.source!r})"


def compile_value(value: Any) -> CompiledValue:
    """Parse every string in `value`. Raises the first `TemplateError`, with `.value_path`."""
    return CompiledValue(value)


def find_template_errors(value: Any) -> list[tuple[ValuePath, TemplateError]]:
    """Every template error in `value` (each also carries `.value_path`), to report them
    all at once; an empty list when the whole tree compiles."""
    found: list[tuple[ValuePath, TemplateError]] = []
    _collect(value, (), found)
    return found


def _collect(value: Any, at: ValuePath, found: list[tuple[ValuePath, TemplateError]]) -> None:
    if isinstance(value, str):
        try:
            parse(value)
        except TemplateError as exc:
            exc.value_path = at  # type: ignore[attr-defined]
            found.append((at, exc))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _collect(item, (*at, key), found)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _collect(item, (*at, i), found)


def _compile(value: Any, at: ValuePath, templates: list[tuple[ValuePath, Template]]) -> _Static | _Render:
    if isinstance(value, str):
        try:
            template = parse(value)
        except TemplateError as exc:
            exc.value_path = at  # type: ignore[attr-defined]
            raise
        templates.append((at, template))
        if template.is_literal:
            text = template.render({})
            return _Static(value if text == value else text)
        return _located(template.render, at)
    if isinstance(value, Mapping):
        keys = list(value.keys())
        nodes = [_compile(value[k], (*at, k), templates) for k in keys]
        if all(isinstance(n, _Static) for n in nodes):
            unchanged = all(n.value is value[k] for k, n in zip(keys, nodes, strict=True))  # type: ignore[union-attr]
            return _Static(value if unchanged else dict(zip(keys, (n.value for n in nodes), strict=True)))  # type: ignore
        items = tuple((k, n.value, None) if isinstance(n, _Static) else (k, None, n) for k, n in zip(keys, nodes, strict=True))

        def render_dict(scope: Mapping[str, Any]) -> dict[Any, Any]:
            return {k: (v if r is None else r(scope)) for k, v, r in items}

        return render_dict
    if isinstance(value, (list, tuple)):
        nodes = [_compile(item, (*at, i), templates) for i, item in enumerate(value)]
        if all(isinstance(n, _Static) for n in nodes):
            unchanged = isinstance(value, list) and all(
                n.value is item for item, n in zip(value, nodes, strict=True)  # type: ignore[union-attr]
            )
            return _Static(value if unchanged else [n.value for n in nodes])  # type: ignore[union-attr]
        entries = tuple((n.value, None) if isinstance(n, _Static) else (None, n) for n in nodes)

        def render_list(scope: Mapping[str, Any]) -> list[Any]:
            return [v if r is None else r(scope) for v, r in entries]

        return render_list
    return _Static(value)


def _located(render: _Render, at: ValuePath) -> _Render:
    """Wrap a template's render so that an error says where in the tree it came from."""

    def render_at(scope: Mapping[str, Any]) -> Any:
        try:
            return render(scope)
        except TemplateError as exc:
            if getattr(exc, "value_path", None) is None:
                exc.value_path = at  # type: ignore[attr-defined]
            raise

    return render_at
