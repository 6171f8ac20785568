"""Split a template string into tokens.

Outside `${...}` everything is `TEXT` (with `$${` turned into a literal `${`). Inside,
the lexer yields names, numbers, quoted strings and punctuation. Three parts are read whole,
because they are not template syntax: the type after `as` is one `TYPE` token (`select/a,b`,
`audio/mp3;base64`), the default after `|` is one `DEFAULT` token (quoted, a flow
`[...]`/`{...}`, or plain text up to the closing `}` or an annotation), unless it is itself
a `${...}` (a fallback reference, lexed as a nested expression), and `@(name text)` is one
`ANNOTATION` token.

    >>> [t.kind for t in tokenize("a${input.x | 1}")]
    ['TEXT', 'OPEN', 'NAME', 'DOT', 'NAME', 'PIPE', 'DEFAULT', 'CLOSE', 'END']
    >>> [t.value for t in tokenize("${input.x as select/a,b | a @(description Pick one)}")][4:]
    ['as', 'select/a,b', '|', 'a', 'description Pick one', '}', '']
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Literal

from ..errors import TemplateError

Kind = Literal[
    "TEXT", "OPEN", "NAME", "INT", "STRING", "DOT", "LBRACKET", "RBRACKET", "STAR", "SLASH", "PIPE", "DEFAULT",
    "TYPE", "ANNOTATION", "CLOSE", "END",
]

_PUNCT: dict[str, Kind] = {".": "DOT", "[": "LBRACKET", "]": "RBRACKET", "*": "STAR", "/": "SLASH", "|": "PIPE", "}": "CLOSE"}

_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
    "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029",
}  # fmt: skip
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


@dataclass(frozen=True, slots=True)
class Token:
    """`value` is the text (for STRING/DEFAULT: the unquoted value); `quote` says how a
    STRING or DEFAULT was written: `"`, `'`, `[`/`{` for a flow default, or `""` for plain."""

    kind: Kind
    value: str
    start: int
    end: int
    space_before: bool = False
    quote: str = ""


def tokenize(text: str) -> Iterator[Token]:
    """Yield the tokens of `text`, ending with `END`; raise `TemplateError` on bad input."""
    n = len(text)
    i = 0
    buf: list[str] = []
    buf_start = 0
    while i < n:
        ch = text[i]
        if ch == "$" and text.startswith("$${", i):
            buf.append("${")
            i += 3
            continue
        if ch == "$" and text.startswith("${", i):
            if buf:
                yield Token("TEXT", "".join(buf), buf_start, i)
                buf = []
            yield Token("OPEN", "${", i, i + 2)
            i = yield from _expression(text, i + 2, i)
            buf_start = i
            continue
        buf.append(ch)
        i += 1
    if buf:
        yield Token("TEXT", "".join(buf), buf_start, n)
    yield Token("END", "", n, n)


def _error(message: str, text: str, offset: int, hint: str | None = None) -> TemplateError:
    return TemplateError(message, template=text, offset=offset, hint=hint)


def _unclosed(text: str, open_at: int) -> TemplateError:
    return _error("unclosed '${'", text, open_at, "end it with '}', or write '$${' for a literal '${'")


def _expression(text: str, i: int, open_at: int) -> Generator[Token, None, int]:
    """Tokens of one expression, from just after `${` through its `}`; returns the index after it."""
    n = len(text)
    previous = "OPEN"
    while True:
        start = i
        while i < n and text[i].isspace():
            i += 1
        space = i > start
        if i >= n:
            raise _unclosed(text, open_at)
        ch = text[i]
        if ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_-"):
                j += 1
            word = text[i:j]
            yield Token("NAME", word, i, j, space)
            i = j
            if word == "as" and space and previous not in ("DOT", "LBRACKET"):
                i = yield from _type(text, i, open_at)
                previous = "TYPE"
                continue
            previous = "NAME"
        elif ch.isdigit() or (ch == "-" and i + 1 < n and text[i + 1].isdigit()):
            j = i + 1
            while j < n and text[j].isdigit():
                j += 1
            yield Token("INT", text[i:j], i, j, space)
            i = j
            previous = "INT"
        elif ch in "\"'":
            value, j = _quoted(text, i, open_at)
            yield Token("STRING", value, i, j, space, ch)
            i = j
            previous = "STRING"
        elif ch == "|":
            yield Token("PIPE", "|", i, i + 1, space)
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            if text.startswith("${", j):
                # a fallback reference: `${input.channel | ${env.DEFAULT_CHANNEL}}`
                yield Token("OPEN", "${", j, j + 2, True)
                i = yield from _expression(text, j + 2, j)
            else:
                token = _default(text, i + 1, open_at)
                yield token
                i = token.end
            previous = "DEFAULT"
        elif ch == "@" and text.startswith("@(", i):
            token = _annotation(text, i, open_at)
            yield token
            i = token.end
            previous = "ANNOTATION"
        elif ch in _PUNCT:
            yield Token(_PUNCT[ch], ch, i, i + 1, space)
            i += 1
            if ch == "}":
                return i
            previous = _PUNCT[ch]
        elif ch == "$" and text.startswith("${", i):
            raise _error("a '${' cannot be nested inside another", text, i, "templates do not nest")
        else:
            raise _error(f"unexpected character {ch!r}", text, i)


def _type(text: str, i: int, open_at: int) -> Generator[Token, None, int]:
    """The type after `as`, read whole (up to a space, `|` or `}`) as one TYPE token."""
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    j = i
    while j < n and not text[j].isspace() and text[j] not in "|}" and not text.startswith("@(", j):
        j += 1
    if j >= n:
        raise _unclosed(text, open_at)
    if j > i:
        yield Token("TYPE", text[i:j], i, j, True)
    return j


def _annotation(text: str, i: int, open_at: int) -> Token:
    """`@(name text)`: the token's value is `name text`; parentheses inside are balanced."""
    n = len(text)
    depth = 0
    j = i + 1
    while j < n:
        ch = text[j]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                body = text[i + 2 : j].strip()
                if not body:
                    raise _error("an empty annotation", text, i, "write @(description some text)")
                return Token("ANNOTATION", body, i, j + 1, True)
        j += 1
    raise _error("unclosed '@(' annotation", text, i, "end it with ')'")


def _quoted(text: str, i: int, open_at: int) -> tuple[str, int]:
    """Read a YAML-style quoted string starting at `text[i]`; return (value, index after it)."""
    quote = text[i]
    n = len(text)
    out: list[str] = []
    j = i + 1
    while j < n:
        ch = text[j]
        if ch == quote:
            if quote == "'" and text.startswith("''", j):
                out.append("'")
                j += 2
                continue
            return "".join(out), j + 1
        if ch == "\\" and quote == '"':
            if j + 1 >= n:
                break
            esc = text[j + 1]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                j += 2
                continue
            if esc in _HEX_ESCAPES:
                width = _HEX_ESCAPES[esc]
                digits = text[j + 2 : j + 2 + width]
                if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
                    out.append(chr(int(digits, 16)))
                    j += 2 + width
                    continue
            raise _error(f"unknown escape '\\{esc}' in a quoted string", text, j, "write '\\\\' for a backslash")
        out.append(ch)
        j += 1
    raise _error(f"unclosed {quote} string", text, i, f"end it with {quote}, then close the template with '}}'")


def _default(text: str, i: int, open_at: int) -> Token:
    """Read the default after `|` as one DEFAULT token; the closing `}` is left for the caller."""
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    if i >= n:
        raise _unclosed(text, open_at)
    ch = text[i]
    if ch in "\"'":
        value, j = _quoted(text, i, open_at)
        k = j
        while k < n and text[k].isspace():
            k += 1
        if k < n and text[k] != "}" and not text.startswith("@(", k):
            raise _error(
                "unexpected text after the quoted default", text, k, "put the whole default inside the quotes"
            )
        return Token("DEFAULT", value, i, j, True, ch)
    if ch in "[{":
        j = _flow_end(text, i, open_at)
        return Token("DEFAULT", text[i:j], i, j, True, ch)
    j = i
    while j < n and text[j] != "}":
        if text.startswith("${", j):
            raise _error("a '${' cannot be nested inside a default", text, j, "a default is a plain value, or one whole ${...}")
        if text[j] == "|":
            raise _error("a default can hold '|' only when quoted", text, j, "write the default in quotes: | \"a|b\"")
        if text.startswith("@(", j) and text[j - 1].isspace():
            break  # an annotation after the default
        j += 1
    if j >= n:
        raise _unclosed(text, open_at)
    value = text[i:j].rstrip()
    if not value:
        raise _error("expected a default after '|'", text, i, "write | \"\" for an empty string, or | null")
    return Token("DEFAULT", value, i, i + len(value), True, "")


def _flow_end(text: str, i: int, open_at: int) -> int:
    """Index just after the flow collection (`[...]` or `{...}`) that starts at `text[i]`."""
    n = len(text)
    closers: list[str] = []
    j = i
    while j < n:
        ch = text[j]
        if ch in "\"'":
            _, j = _quoted(text, j, open_at)
            continue
        if ch in "[{":
            closers.append("]" if ch == "[" else "}")
        elif ch in "]}":
            if ch != closers.pop():
                raise _error(f"unexpected {ch!r} in the default", text, j, f"the default opened with {text[i]!r}")
            if not closers:
                return j + 1
        j += 1
    raise _unclosed(text, open_at)
