"""Convert a value to the type named after `as`, and turn values into text.

    >>> cast("0.7", "number"), cast("42", "integer"), cast("Yes", "boolean")
    (0.7, 42, True)
    >>> cast({"a": 1}, "text")
    '{"a":1}'

Rules (each failure raises `CastError(path, value, type)`):

- `text`: a string as is; booleans `true`/`false`; numbers `str()`; dicts/lists compact JSON.
- `raw`: as `text`; interpolated into an http-stream `url:` it is not percent-encoded.
- `number`: ints stay ints, floats stay floats, a numeric string becomes a float.
  Booleans, NaN and infinities are rejected.
- `integer`: ints, integral floats (`2.0`), integer strings (`"42"`, also `"2.0"`).
  Booleans, `1.5` and `"hot"` are rejected.
- `boolean`: real booleans; `true/false/1/0/yes/no/on/off` in any case; the numbers 0 and 1.
- `json`: a string is JSON-parsed; any other value (None included) passes through.
- `object` / `list`: a dict / list (a tuple becomes a list), or a JSON string of one.
- `stream/text` / `stream/json`: see `stream_cast`.
- `base64`: bytes become base64 text; a data URI gives its payload; other text is taken to be
  base64 already (a media input arrives as text).
- `image`, `audio`, `video`, `file`, `model-3d` (media): a URL, data URI or base64 text as is
  (`;base64` takes a data URI's payload); bytes become base64 text (`;data-uri` makes them a
  data URI of the subtype's MIME type).
- `any`: the value as it is.

`caster_for_spec` adds what a whole `as` clause says (`types.TypeSpec`): `select/a,b` only
lets its options through (the error lists them), `object/a,b.c` keeps those paths (named by
their last step), and `T[]` casts each item of a list.

`None` is not a valid value for any type but `json` (and the streams, as a chunk); the
evaluator treats a null as missing for those types before it gets here.
"""

from __future__ import annotations

import base64
import collections.abc
import datetime as _dt
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from ..errors import CastError, TemplateError
from .ast import TYPE_ALIASES, TYPES, normalise_type
from .parser import did_you_mean
from .types import TypeSpec

_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


# -- text ------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def to_text(value: Any) -> str:
    """How a value reads inside a longer string: strings as is, `true`/`false`, numbers via
    `str()`, None as `null`, dicts and lists as compact JSON."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]  # (its class was just checked)
    if cls is bool:
        return "true" if value else "false"
    if cls is int or cls is float:
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (Mapping, list, tuple)):
        return to_json(value)
    return str(value)


# -- one caster per type: (value, path) -> value ---------------------------------------


def _text(value: Any, path: str) -> str:
    if value is None:
        raise CastError(path, value, "text")
    return to_text(value)


def _number(value: Any, path: str) -> int | float:
    cls = value.__class__
    if cls is int:
        return value  # type: ignore[no-any-return]  # (its class was just checked)
    if cls is float:
        if math.isfinite(value):
            return value  # type: ignore[no-any-return]
    elif isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(int(value) if isinstance(value, int) else float(value), path)
    raise CastError(path, value, "number")


def _integer(value: Any, path: str) -> int:
    cls = value.__class__
    if cls is int:
        return value  # type: ignore[no-any-return]  # (its class was just checked)
    if cls is float:
        if value.is_integer():
            return int(value)
    elif isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if _NUMBER.fullmatch(text):
            number = float(text)
            if number.is_integer():
                return int(number)
    elif isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise CastError(path, value, "integer")


def _boolean(value: Any, path: str) -> bool:
    if value is True or value is False:
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    raise CastError(path, value, "boolean")


def _json(value: Any, path: str) -> Any:
    if isinstance(value, (str, bytes, bytearray)):
        try:
            return json.loads(value)
        except ValueError:
            raise CastError(path, value, "json") from None
    return value


def _object(value: Any, path: str) -> dict[Any, Any]:
    if value.__class__ is dict:
        return value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (str, bytes, bytearray)):
        try:
            loaded = json.loads(value)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            return loaded
    raise CastError(path, value, "object")


def _list(value: Any, path: str) -> list[Any]:
    if value.__class__ is list:
        return value
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (str, bytes, bytearray)):
        try:
            loaded = json.loads(value)
        except ValueError:
            loaded = None
        if isinstance(loaded, list):
            return loaded
    raise CastError(path, value, "list")


# -- streams ---------------------------------------------------------------------------


def _chunk_text(chunk: Any) -> str:
    return to_text(chunk)


def _chunk_same(chunk: Any) -> Any:
    return chunk


class StreamCast(collections.abc.AsyncGenerator):  # type: ignore[type-arg]
    """An async iterator over another one, converting each chunk.

    Closing it (`aclose()`) closes the inner iterator, even before the first chunk was
    pulled: that is how a client that disconnects stops the upstream request. For
    `stream/text`, a chunk that is None is skipped (a token with no content).
    """

    __slots__ = ("_inner", "_convert", "_skip_none", "_closed")

    def __init__(self, inner: AsyncIterator[Any], convert: Callable[[Any], Any], skip_none: bool) -> None:
        self._inner = inner
        self._convert = convert
        self._skip_none = skip_none
        self._closed = False

    def __aiter__(self) -> StreamCast:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        chunk = await self._inner.__anext__()
        if self._skip_none:
            while chunk is None:
                chunk = await self._inner.__anext__()
        return self._convert(chunk)

    async def asend(self, value: Any) -> Any:
        return await self.__anext__()

    async def athrow(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        await self.aclose()
        if val is None:
            raise typ
        raise val

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


class _SyncSource:
    """A sync iterator, or a single value, seen as an async iterator."""

    __slots__ = ("_it",)

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it

    def __aiter__(self) -> _SyncSource:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def stream_cast(value: Any, type_name: str) -> StreamCast:
    """Wrap `value` as a stream of `stream/text` (each chunk as text) or `stream/json`
    (chunks as they are). An async iterable or a sync iterator is streamed chunk by
    chunk; any other value (a string, a dict, a list) is a stream of one chunk."""
    if isinstance(value, collections.abc.AsyncIterable):
        inner: Any = value.__aiter__()
    elif isinstance(value, collections.abc.Iterator):
        inner = _SyncSource(value)
    else:
        inner = _SyncSource(iter((value,)))
    if type_name == "stream/text":
        return StreamCast(inner, _chunk_text, skip_none=True)
    return StreamCast(inner, _chunk_same, skip_none=False)


def _stream_text(value: Any, path: str) -> StreamCast:
    return stream_cast(value, "stream/text")


def _stream_json(value: Any, path: str) -> StreamCast:
    return stream_cast(value, "stream/json")


# -- encoded values and media ----------------------------------------------------------


def _data_uri_payload(text: str) -> str | None:
    """The base64 payload of a `data:...;base64,` URI, else None."""
    if not text.startswith("data:"):
        return None
    meta, comma, payload = text.partition(",")
    return payload if comma and meta.endswith(";base64") else None


def _base64(value: Any, path: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, str):
        payload = _data_uri_payload(value)
        return value if payload is None else payload
    raise CastError(path, value, "base64", expected="base64 text or bytes")


def _media_caster(name: str, mime: str, fmt: str | None) -> Callable[[Any, str], str]:
    def media(value: Any, path: str) -> str:
        if isinstance(value, str):
            payload = _data_uri_payload(value) if fmt == "base64" else None
            return value if payload is None else payload
        if isinstance(value, (bytes, bytearray)):
            encoded = base64.b64encode(bytes(value)).decode("ascii")
            return f"data:{mime};base64,{encoded}" if fmt == "data-uri" else encoded
        raise CastError(path, value, name, expected=f"{'an' if name[0] in 'aeiou' else 'a'} {name} (a URL, a data URI or base64 text)")

    return media


def _any(value: Any, path: str) -> Any:
    return value


CASTERS: dict[str, Callable[[Any, str], Any]] = {
    "text": _text,
    "raw": _text,
    "number": _number,
    "integer": _integer,
    "boolean": _boolean,
    "json": _json,
    "object": _object,
    "list": _list,
    "base64": _base64,
    "any": _any,
    "stream/text": _stream_text,
    "stream/json": _stream_json,
}


def caster_for_spec(spec: TypeSpec) -> Callable[[Any, str], Any]:
    """The function that casts to a whole `as` clause (options, projection, lists, media)."""
    if spec.is_list:
        each = caster_for_spec(spec.item)

        def each_item(value: Any, path: str) -> list[Any]:
            return [each(item, f"{path}[{index}]") for index, item in enumerate(_list(value, path))]

        return each_item
    if spec.media_type is not None:
        mime = spec.media_type if spec.subtype else "application/octet-stream"
        return _media_caster(spec.name, mime, spec.format)
    options = spec.options
    if options is not None:
        allowed = frozenset(options)
        expected = "one of: " + ", ".join(options)

        def select(value: Any, path: str) -> str:
            text = _text(value, path)
            if text not in allowed:
                raise CastError(path, value, "select", expected=expected)
            return text

        return select
    projection = spec.projection
    if projection is not None:
        paths = [(tuple(step for step in p.split(".") if step), p.rsplit(".", 1)[-1]) for p in projection]

        def project(value: Any, path: str) -> dict[str, Any]:
            whole = _object(value, path)
            result: dict[str, Any] = {}
            for steps, key in paths:
                current: Any = whole
                for step in steps:
                    current = current.get(step) if isinstance(current, Mapping) else None
                result[key] = current
            return result

        return project
    return caster_for(spec.value_type)


def caster_for(type_name: str) -> Callable[[Any, str], Any]:
    """The function that casts to `type_name` (`string` is `text`)."""
    caster = CASTERS.get(normalise_type(type_name))
    if caster is None:
        hint = did_you_mean(type_name, TYPES, TYPE_ALIASES) or "types: " + ", ".join(TYPES)
        raise TemplateError(f"unknown type '{type_name}'", hint=hint)
    return caster


def cast(value: Any, type_name: str, path: str = "value") -> Any:
    """Convert `value` to `type_name`; raise `CastError` naming `path` if it does not convert."""
    return caster_for(type_name)(value, path)
