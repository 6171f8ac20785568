"""Form bodies for http-stream: `multipart/form-data` (file uploads, as OpenAI's transcription
and image-edit endpoints take) and `application/x-www-form-urlencoded`.

Which one a request sends is its `body_format:`, or, when that is not written, the
Content-Type header the node gives (the header is then replaced by httpx's own, which
carries the multipart boundary). The body is a mapping; each key is one field:

- a media value (a template typed `as image`, `as audio/mp3`, ...: base64 text or a data
  URI), or any `data:...;base64,` URI, is a **file part**: its bytes decoded, its content
  type from the data URI, the written media type, or the bytes' signature, and a file name
  `<field>.<extension>` (servers such as OpenAI's read the format from that extension);
- a list holds several parts of that name (`image[]`), each read as above;
- text, numbers and booleans (`true`/`false`) are text fields; a mapping is its JSON; null
  is left out.

A media value that is a URL is refused (flowctl never fetches a URL a request gave it);
so is base64 that does not decode: both are the input's fault (a 422 naming it).

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n...")
    'image/png'
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import secrets
import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal

from ..engine.templating import CompiledValue

BodyFormat = Literal["json", "text", "form", "multipart"]

#: Content-Type headers that choose a form body (when `body_format:` is not written)
_BY_CONTENT_TYPE: dict[str, BodyFormat] = {"multipart/form-data": "multipart", "application/x-www-form-urlencoded": "form"}

#: leading bytes of the media a model API takes, for a file sent as bare base64
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"WAVE", 8, "audio/wav"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
    (b"\x1aE\xdf\xa3", 0, "video/webm"),
    (b"ftyp", 4, "video/mp4"),
    (b"%PDF", 0, "application/pdf"),
)

#: extensions `mimetypes` lacks or guesses oddly, for the file name
_EXTENSIONS = {"audio/mpeg": ".mp3", "audio/wav": ".wav", "audio/ogg": ".ogg", "audio/flac": ".flac", "image/jpeg": ".jpg", "video/webm": ".webm", "image/webp": ".webp"}


#: what a data URI may give as the part's Content-Type (it goes into a header)
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[\w.+-]+")


class FormValueError(ValueError):
    """A body value that cannot go into the form; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def body_format(written: BodyFormat | None, headers: dict[str, str]) -> BodyFormat | None:
    """The format to send: `written`, else the one the Content-Type header names; None for
    the usual rule (a mapping or list as JSON, text as is)."""
    if written is not None:
        return written
    for name, value in headers.items():
        if name.lower() == "content-type":
            return _BY_CONTENT_TYPE.get(value.split(";", 1)[0].strip().lower())
    return None


def without_content_type(headers: dict[str, str]) -> dict[str, str]:
    """`headers` less Content-Type: httpx writes the form's own (with its boundary)."""
    return {name: value for name, value in headers.items() if name.lower() != "content-type"}


def media_fields(compiled: CompiledValue | None) -> dict[str, str]:
    """The body's top-level keys written as one media-typed template (`${input.file as
    audio}`, or a list of them), with the media type written (`audio/*`)."""
    found: dict[str, str] = {}
    for path, template in compiled.templates if compiled is not None else ():
        if not path or not template.is_whole or len(path) > 2 or (len(path) == 2 and not isinstance(path[1], int)):
            continue
        spec = template.parts[0].reference.spec  # type: ignore[union-attr]  # a whole template is one Expr
        if spec is not None and spec.media_type is not None:
            found[str(path[0])] = spec.media_type
    return found


def urlencoded(body: Any) -> tuple[str, bytes]:
    """An application/x-www-form-urlencoded body: (its Content-Type header, its bytes); a
    list is the field repeated."""
    if not isinstance(body, Mapping):
        raise FormValueError("", f"a form body is a mapping of fields, not {type(body).__name__}")
    pairs: list[tuple[str, str]] = []
    for name, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                pairs.append((str(name), _text(item)))
    return "application/x-www-form-urlencoded", urllib.parse.urlencode(pairs).encode("ascii")


def multipart(body: Any, media: Mapping[str, str]) -> tuple[str, bytes]:
    """A multipart body: (its Content-Type header, with the boundary; its bytes)."""
    if not isinstance(body, Mapping):
        raise FormValueError("", f"a multipart body is a mapping of fields, not {type(body).__name__}")
    boundary = secrets.token_hex(16)
    out = bytearray()
    for name, value in body.items():
        key = str(name)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            out += f"--{boundary}\r\n".encode()
            if key in media or isinstance(item, str) and item.startswith("data:"):
                filename, data, kind = _file(key, item, media.get(key, "application/octet-stream"))
                out += f'Content-Disposition: form-data; name="{_quoted(key)}"; filename="{_quoted(filename)}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
                out += data
            else:
                out += f'Content-Disposition: form-data; name="{_quoted(key)}"\r\n\r\n'.encode() + _text(item).encode()
            out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(out)


def _quoted(name: str) -> str:
    """A field or file name inside a quoted header parameter, escaped as browsers do (HTML's
    multipart/form-data encoding): a request value cannot end the header or add one."""
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def sniff(data: bytes) -> str | None:
    """The media type `data`'s leading bytes say, if they are one of the usual ones."""
    for magic, offset, kind in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _file(field: str, value: Any, written: str) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) of a media value."""
    if not isinstance(value, str):
        raise FormValueError(field, f"a file is base64 text or a data URI, not {type(value).__name__}")
    kind: str | None = None
    encoded = value
    if value.startswith("data:"):
        head, sep, encoded = value.partition(",")
        if not sep or not head.endswith(";base64"):
            raise FormValueError(field, "a data URI for a file must be base64 (`data:<type>;base64,...`)")
        kind = head[5:].removesuffix(";base64").split(";", 1)[0] or None
        if kind is not None and not _MEDIA_TYPE.fullmatch(kind):
            raise FormValueError(field, f"has a data URI whose media type is not one: {kind[:40]!r}")
    elif value.startswith(("http://", "https://")):
        raise FormValueError(field, "is a URL; flowctl uploads a file's content, it does not fetch URLs (send base64 or a data URI)")
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise FormValueError(field, "is not valid base64") from None
    kind = kind or (written if not written.endswith("/*") and written != "application/octet-stream" else None) or sniff(data) or "application/octet-stream"
    extension = _EXTENSIONS.get(kind) or mimetypes.guess_extension(kind) or ".bin"
    return f"{field.removesuffix('[]')}{extension}", data, kind
