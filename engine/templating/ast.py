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

SOURCES: Final[tuple[str, ...]] = ("input", "env", "nodes", "response", "response[]", "run", "request", "item", "index")

TYPES: Final[tuple[str, ...]] = (
    "text",
    "string",
    "raw",
    "number",
    "integer",
    "boolean",
    "json",
    "object",
    "list",
    "stream/text",
    "stream/json",
)

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
    "stream": "stream/text",
}


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


def format_path(source: str, path: tuple[str | int, ...]) -> str:
    """Write a source and path back as text: `response[].choices[0]["a b"]`."""
    out = [source]
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _is_plain_name(seg):
            out.append(f".{seg}")
        else:
            escaped = seg.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{escaped}"]')
    return "".join(out)


def _is_plain_name(seg: str) -> bool:
    return bool(seg) and (seg[0].isalpha() or seg[0] == "_") and all(c.isalnum() or c in "_-" for c in seg)


@dataclass(frozen=True)
class Reference:
    """One `${source.path as type | default}` as written.

    `type` is normalised (`string` is stored as `text`); `default` is the YAML-parsed
    default, not yet cast, or `NO_DEFAULT`.
    """

    source: str
    path: tuple[str | int, ...]
    type: str | None
    default: Any
    text: str

    @property
    def dotted(self) -> str:
        """The source and path as one string, for messages: `input.prompt`."""
        return format_path(self.source, self.path)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


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
