"""The syntax tree of a template string, and the vocabulary it is written in.

A template string parses to a tuple of parts: `Text` (literal characters, escapes already
resolved) and `Expr` (one `${...}` with its `Reference` and where it sits in the string).

    >>> from flowctl.engine.templating import parse
    >>> parse("${nodes.vllm.output.port as integer | 8000}").references[0].path
    ('vllm', 'output', 'port')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .types import TYPE_NAMES, TypeSpec

SOURCES: Final[tuple[str, ...]] = ("input", "env", "nodes", "response", "response[]", "result", "run", "request", "item", "index", "loop", "hook", "replica")

#: every type name a template may write after `as` (see `types.py` for subtypes and formats)
TYPES: Final[tuple[str, ...]] = TYPE_NAMES

STREAM_TYPES: Final[frozenset[str]] = frozenset({"stream/text", "stream/json"})

# Spellings people reach for that are not types; used for hints only, never accepted.
TYPE_ALIASES: Final[dict[str, str]] = {
    "str": "text",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "dict": "object",
    "map": "object",
    "array": "list",
}


class _Wildcard:
    """The path step `[*]`: the rest of the path, read from every item of a list."""

    _instance: _Wildcard | None = None

    def __new__(cls) -> _Wildcard:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "WILDCARD"

    def __reduce__(self) -> str:
        return "WILDCARD"


WILDCARD: Final = _Wildcard()

#: one step of a path: a key, an index, or `[*]`
Step = str | int | _Wildcard


class _NoDefault:
    """The type of `NO_DEFAULT`: a reference written without `| default`."""

    _instance: _NoDefault | None = None

    def __new__(cls) -> _NoDefault:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()


def normalise_type(name: str) -> str:
    """`string` is another spelling of `text`; every other type keeps its name."""
    return "text" if name == "string" else name


def value_type(name: str | None) -> str | None:
    """The type of the value itself: `raw` is text that a URL takes as written (see
    `nodes/http_url.py`), so as an input it is `text`."""
    return "text" if name == "raw" else name


def format_path(source: str, path: tuple[Step, ...]) -> str:
    """Write a source and path back as text: `response[].choices[0]["a b"]`, `input.xs[*].id`."""
    out = [source]
    for seg in path:
        if seg is WILDCARD:
            out.append("[*]")
        elif isinstance(seg, int):
            out.append(f"[{seg}]")
        elif isinstance(seg, str) and _is_plain_name(seg):
            out.append(f".{seg}")
        elif isinstance(seg, str):
            escaped = seg.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def _is_plain_name(seg: str) -> bool:
    return bool(seg) and (seg[0].isalpha() or seg[0] == "_") and all(c.isalnum() or c in "_-" for c in seg)


@dataclass(frozen=True)
class Reference:
    """One `${source.path as type | default @(annotation ...)}` as written.

    `type` is the value type the reference is cast to (`string` and `select/...` are stored as
    `text`, `T[]` as `list`), `spec` the whole `as` clause (options, projection, media type,
    format), or None without one. `default` is the YAML-parsed default, not yet cast, another
    `Reference` (a fallback: `| ${env.X}`), or `NO_DEFAULT`. `annotations` are the `@(name
    text)` pairs, in order. `optional` marks a reference that is itself a fallback: it is read
    only when the one before it is missing.
    """

    source: str
    path: tuple[Step, ...]
    type: str | None
    default: Any
    text: str
    spec: TypeSpec | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    optional: bool = False

    @property
    def dotted(self) -> str:
        """The source and path as one string, for messages: `input.prompt`."""
        return format_path(self.source, self.path)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    @property
    def fallback(self) -> Reference | None:
        """The reference read when this one is missing (`| ${...}`), if any."""
        return self.default if isinstance(self.default, Reference) else None

    def annotation(self, name: str) -> str | None:
        return next((value for key, value in self.annotations if key == name), None)


@dataclass(frozen=True, slots=True)
class Text:
    """Literal characters of a template (`$${` already turned into `${`)."""

    value: str
    start: int


@dataclass(frozen=True, slots=True)
class Expr:
    """One `${...}`; `start`/`end` are its character span in the template string, and
    `default_at` where its default starts (-1 when it has none), for messages."""

    reference: Reference
    start: int
    end: int
    default_at: int = -1


Part = Text | Expr
