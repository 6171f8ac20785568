"""The `as` clause of a template: a type, written the way model-compose writes it.

    type     = NAME ("[]")? ("/" SUBTYPE)? ("[" ATTRS "]")? (";" FORMAT)?

`NAME` is a value type (`text`, `number`, `select`, `image`, ...), `[]` makes it a list of
that type, `SUBTYPE` refines it (`stream/text`, `select/low,high`, `object/id,user.name`,
`image/png`), `ATTRS` are `key=value` pairs kept for media (`audio/pcm[sample_rate=24000]`)
and `FORMAT` says how a value is carried (`;base64`, `;url`) or, on an output, how it is
streamed (`;sse-text`, `;sse-json`).

    >>> spec = parse_type("select/low,high")
    >>> spec.value_type, spec.options
    ('text', ('low', 'high'))
    >>> parse_type("object[]/id.videoId,snippet.title").projection
    ('id.videoId', 'snippet.title')
    >>> parse_type("audio/mp3;base64").media_type
    'audio/mp3'
    >>> parse_type("stream/json").value_type
    'stream/json'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: value types by name; several names share a value type (`markdown` is text)
_VALUE_TYPES: Final[dict[str, str]] = {
    "text": "text",
    "string": "text",
    # text that a URL takes as written, not percent-encoded (`nodes/http_url.py`)
    "raw": "raw",
    "markdown": "text",
    "select": "text",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "json": "json",
    "object": "object",
    "list": "list",
    "any": "any",
    "base64": "base64",
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    "model-3d": "model-3d",
    "stream": "stream/text",
}

#: types whose value is a media item: a URL, a data URI or base64 text (bytes are encoded)
MEDIA_TYPES: Final[frozenset[str]] = frozenset({"image", "audio", "video", "file", "model-3d"})

#: how a media value is carried (`;base64`), or how an output is streamed (`;sse-text`)
VALUE_FORMATS: Final[tuple[str, ...]] = ("base64", "url", "data-uri", "path")
STREAM_FORMATS: Final[dict[str, str]] = {"sse-text": "stream/text", "sse-json": "stream/json"}

#: every type name a template may use after `as`, for messages and hints
TYPE_NAMES: Final[tuple[str, ...]] = (*_VALUE_TYPES, "stream/text", "stream/json")


class TypeSyntaxError(ValueError):
    """The text after `as` is not a type; `offset` is where in that text the problem is."""

    def __init__(self, message: str, offset: int = 0, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


@dataclass(frozen=True)
class TypeSpec:
    """One parsed `as` clause. `text` is the clause as written."""

    name: str
    is_list: bool = False
    subtype: str | None = None
    attrs: tuple[tuple[str, str], ...] = ()
    format: str | None = None
    text: str = ""

    @property
    def value_type(self) -> str:
        """The type a value is cast to: `list` for `T[]`, `text` for `select`/`markdown`,
        `stream/text` or `stream/json` for streams, else the type's own name."""
        if self.is_list:
            return "list"
        if self.name == "stream":
            return "stream/json" if self.subtype == "json" else "stream/text"
        return _VALUE_TYPES[self.name]

    @property
    def item(self) -> TypeSpec:
        """The type of each item of a `T[]` list (the spec itself for anything else)."""
        if not self.is_list:
            return self
        return TypeSpec(self.name, False, self.subtype, self.attrs, self.format, self.text.replace("[]", "", 1))

    @property
    def options(self) -> tuple[str, ...] | None:
        """A `select`'s allowed values, in the order written."""
        if self.name != "select" or not self.subtype:
            return None
        return tuple(option.strip() for option in self.subtype.split(","))

    @property
    def projection(self) -> tuple[str, ...] | None:
        """An `object/a,b.c`'s paths: the result keeps `a` and `c` (the last step names it)."""
        if self.name != "object" or not self.subtype:
            return None
        return tuple(path.strip() for path in self.subtype.split(","))

    @property
    def media_type(self) -> str | None:
        """A media type's MIME type: `image/png`, or `image/*` when no subtype is written."""
        if self.name not in MEDIA_TYPES:
            return None
        if self.name == "file":
            return "application/octet-stream" if not self.subtype else f"application/{self.subtype}"
        return f"{self.name}/{self.subtype or '*'}"

    @property
    def stream_format(self) -> str | None:
        """`stream/text` or `stream/json` when the format asks for a stream (`;sse-text`)."""
        return STREAM_FORMATS.get(self.format or "")

    @property
    def is_plain(self) -> bool:
        """True when the clause says no more than its value type (`number`, `string`,
        `stream/text`): nothing a plain cast to `value_type` would miss."""
        if self.name == "stream":
            return True
        return self.name in _PLAIN and not (self.is_list or self.subtype or self.attrs or self.format)


_PLAIN: Final[frozenset[str]] = frozenset({"text", "string", "raw", "number", "integer", "boolean", "json", "object", "list", "any"})


def parse_type(text: str) -> TypeSpec:
    """Parse the text of an `as` clause (no spaces in it); raise `TypeSyntaxError`."""
    i, n = 0, len(text)
    while i < n and (text[i].isalnum() or text[i] in "-_"):
        i += 1
    name = text[:i]
    if not name:
        raise TypeSyntaxError("expected a type after 'as'", 0, "types: " + ", ".join(TYPE_NAMES))
    if name not in _VALUE_TYPES:
        raise TypeSyntaxError(f"unknown type '{name}'", 0)
    is_list = text.startswith("[]", i)
    if is_list:
        i += 2
    subtype = None
    if i < n and text[i] == "/":
        start = i + 1
        i = start
        while i < n and text[i] not in "[;":
            i += 1
        subtype = text[start:i]
        if not subtype:
            raise TypeSyntaxError(f"expected a subtype after '{name}/'", start)
    attrs: list[tuple[str, str]] = []
    if i < n and text[i] == "[":
        close = text.find("]", i)
        if close < 0:
            raise TypeSyntaxError("unclosed '[' in the type", i, "write attributes as [key=value,key=value]")
        for pair in text[i + 1 : close].split(","):
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise TypeSyntaxError(f"expected key=value in the type's attributes, found '{pair.strip()}'", i + 1)
            attrs.append((key.strip(), value.strip()))
        i = close + 1
    fmt = None
    if i < n and text[i] == ";":
        fmt = text[i + 1 :]
        if fmt not in VALUE_FORMATS and fmt not in STREAM_FORMATS:
            raise TypeSyntaxError(f"unknown format '{fmt}'", i + 1, "formats: " + ", ".join((*VALUE_FORMATS, *STREAM_FORMATS)))
        i = n
    if i != n:
        raise TypeSyntaxError(f"unexpected {text[i]!r} in the type", i)
    spec = TypeSpec(name, is_list, subtype, tuple(attrs), fmt, text)
    _check(spec)
    return spec


def _check(spec: TypeSpec) -> None:
    """What only makes sense for some types: a stream's subtype, select options, and so on."""
    where = len(spec.name) + (2 if spec.is_list else 0) + 1 if spec.subtype else 0
    if spec.name == "stream":
        if spec.subtype not in (None, "text", "json"):
            raise TypeSyntaxError(f"unknown type 'stream/{spec.subtype}'", 0)
        if spec.is_list or spec.attrs or spec.format:
            raise TypeSyntaxError("a stream type takes no `[]`, attributes or format", 0, "write stream/text or stream/json")
    elif spec.name == "select":
        options = spec.options
        if not options or any(not option for option in options):
            raise TypeSyntaxError("`select` needs its options: select/a,b,c", where)
    elif spec.subtype and spec.name not in MEDIA_TYPES and spec.name != "object":
        raise TypeSyntaxError(f"'{spec.name}' takes no subtype", where, "subtypes go with select, object, stream and media types")


__all__ = ["MEDIA_TYPES", "STREAM_FORMATS", "TYPE_NAMES", "VALUE_FORMATS", "TypeSpec", "TypeSyntaxError", "parse_type"]
