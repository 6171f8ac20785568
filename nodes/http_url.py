"""URLs built from templates, and URLs shown in messages.

`render_url` percent-encodes each value interpolated into an http-stream `url:` for the part
of the URL it lands in, so request data cannot change where the request goes:

    url: http://127.0.0.1:8000/v1/${input.path}?user=${input.user}

- in the path, a value is one segment: `/` and `?`, `#`, `%` are escaped, and `.` / `..`
  cannot walk up (`../../admin` stays inside `/v1/`);
- in the query and the fragment, `&`, `=`, `#` and the rest are escaped (`#` cannot cut the
  query short, `&` cannot add a parameter);
- in the authority (`http://${...}:${...}/`), `@`, `/`, `?` and `#` are escaped, so a value
  cannot turn the host into a user name and name another host or port (`@127.0.0.1:9000/x`).

Left as written: a template that is the whole URL (`url: ${nodes.api.output.url}`), a value
that starts the URL (`${nodes.vllm.output.url}/v1/chat/completions`: it brings the scheme and
host), and a value cast `as raw` (`/models/${input.model_path as raw}`), for authors who mean
a value to carry URL syntax.

`redact_url` is how a URL appears in an error: no user info, no query (a key in
`?key=${env.SECRET}` must not reach every client in a 502 body).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..engine.templating import CompiledValue
from ..engine.templating.ast import Expr, Part, Text

#: characters left unescaped, per URL part (besides letters, digits and `-._~`)
_SAFE = {"scheme": "", "authority": ":[]", "path": "", "query": "", "fragment": ""}


def render_url(value: CompiledValue, scope: Mapping[str, Any]) -> str:
    """`value` (an http-stream `url:`) rendered, each interpolated value escaped for its part."""
    templates = value.templates
    if not isinstance(value.source, str) or len(templates) != 1:
        return str(value.render(scope))
    template = templates[0][1]
    where = url_parts(template.parts)
    return str(template.render_each(scope, lambda expr, text: _encode(where[id(expr)], expr, text)))


def url_parts(parts: tuple[Part, ...]) -> dict[int, str]:
    """For each `${...}` among `parts` (by id): `scheme`, `authority`, `path`, `query`,
    `fragment`, or `origin` (a value that starts the URL, taken as written)."""
    where: dict[int, str] = {}
    state = "scheme"
    for index, part in enumerate(parts):
        if isinstance(part, Expr):
            if index == 0:
                where[id(part)], state = "origin", "authority"
            else:
                where[id(part)] = state
            continue
        state = _after(state, part.value if isinstance(part, Text) else "")
    return where


#: the URL part a delimiter character starts, from each part
_NEXT = {
    "authority": {"/": "path", "?": "query", "#": "fragment"},
    "path": {"?": "query", "#": "fragment"},
    "query": {"#": "fragment"},
    "fragment": {},
}


def _after(state: str, text: str) -> str:
    """The URL part after literal `text`, starting in `state`."""
    if state == "scheme":
        if "://" not in text:
            return state
        state, text = "authority", text.split("://", 1)[1]
    moves = _NEXT[state]
    for char in text:
        if char in moves:
            state = moves[char]
            moves = _NEXT[state]
    return state


def _encode(part: str, expr: Expr, text: str) -> str:
    if part == "origin" or expr.reference.type == "raw":
        return text
    if part == "path" and text and text.strip(".") == "":
        return "%2E" * len(text)  # `.` and `..` would be dot segments
    return quote(text, safe=_SAFE[part])


def redact_url(url: str) -> str:
    """`url` without its user info and query (a secret often rides there), for messages."""
    try:
        split = urlsplit(url)
    except ValueError:
        return "(an invalid URL)"
    netloc = split.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((split.scheme, netloc, split.path, "***" if split.query else "", ""))


__all__ = ["redact_url", "render_url", "url_parts"]
