"""A request body read as JSON, with every way it can be hostile answered by a 4xx.

    body = load_json_body(request.headers.get("content-type"), await request.body())

- The body must be declared JSON (`application/json`, or any `+json` type): a browser sends a
  cross-site form or `text/plain` POST without asking first (a "simple request"), so without
  this check any web page could start runs on a loopback server that has no API key (415).
- Not JSON, not UTF-8, an integer longer than Python converts (4300 digits), nesting deeper
  than `MAX_DEPTH`, or a lone UTF-16 surrogate (`"\\ud800"` is valid JSON but no valid text,
  and would fail later when the value is sent upstream): 400, naming where it is.

Each raises `BadRequest`; nothing here can end in a traceback.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..engine.errors import BadRequest

#: deepest nesting of objects and arrays a request body may have
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def is_json_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def load_json_body(content_type: str | None, raw: bytes) -> Any:
    """The body's JSON value (an empty body is `None`). Raises BadRequest (400 or 415)."""
    if not is_json_type(content_type):
        shown = (content_type or "none").split(";", 1)[0].strip()[:60] or "none"
        raise BadRequest(f"the request body must be JSON: send `Content-Type: application/json` (got {shown})", field="content-type", status=415)
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON ({getattr(exc, 'msg', None) or exc.reason})") from None  # type: ignore[union-attr]
    except RecursionError:
        raise BadRequest(f"the request body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer too long to convert
        raise BadRequest(f"the request body is not usable JSON ({str(exc).split(':', 1)[0]})") from None
    _check(value)
    return value


def _check(value: Any) -> None:
    """Nesting depth and lone surrogates, walked without recursion."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise _bad_text(path)
        elif isinstance(item, (dict, list)):
            if len(path) >= MAX_DEPTH:
                raise BadRequest(f"the request body is nested more than {MAX_DEPTH} levels deep", field=_dotted(path))
            if isinstance(item, dict):
                for key, child in item.items():
                    if _SURROGATE.search(key):
                        raise _bad_text(path)
                    stack.append((child, (*path, key)))
            else:
                stack.extend((child, (*path, index)) for index, child in enumerate(item))


def _bad_text(path: tuple[str | int, ...]) -> BadRequest:
    where = _dotted(path)
    return BadRequest(f"{where or 'the request body'} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid text", field=where or None)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out[:200]


__all__ = ["MAX_DEPTH", "is_json_type", "load_json_body"]
