"""Parse the tokens of a template string into its parts (`Text` and `Expr`).

Grammar, inside `${` ... `}`:

    expr       = source path? ("as" type)? ("|" default)? annotation*
    source     = "input" | "env" | "nodes" | "response" | "response[]" | "run" | "request"
    path       = ("." NAME | "[" INT "]" | "[" STRING "]" | "[*]")*     no spaces between steps
    type       = NAME ("[]")? ("/" SUBTYPE)? ("[" ATTRS "]")? (";" FORMAT)?   see types.py
    default    = a YAML scalar or flow collection | "${" expr "}"   (a fallback reference)
    annotation = "@(" NAME text ")"                                 e.g. @(description The city)

Every error is a `TemplateError` carrying the whole string and the 0-based offset of
the problem, with a did-you-mean hint where a name is close to a known one.

    >>> parse_parts("${input.x as nubmer}")
    Traceback (most recent call last):
    ...
    flowctl.engine.errors.TemplateError: unknown type 'nubmer' (did you mean 'number'?)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import TemplateError
from .ast import NO_DEFAULT, SOURCES, TYPE_ALIASES, TYPES, WILDCARD, Expr, Part, Reference, Step, Text
from .lexer import Token, tokenize
from .scalar import load_flow, resolve_plain
from .types import TypeSpec, TypeSyntaxError, parse_type


def parse_parts(text: str, sources: Sequence[str] = SOURCES) -> tuple[Part, ...]:
    """The parts of `text`, in order; adjacent literal text is one `Text`. `sources` are the
    names a reference may start with (a front end parsing another tool's templates passes
    that tool's vocabulary)."""
    return _Parser(text, sources).parse()


def did_you_mean(word: str, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str | None:
    """A hint naming the closest choice to `word`, or None when nothing is close."""
    if aliases and word in aliases:
        return f"did you mean '{aliases[word]}'?"
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not match and word.lower() != word:
        match = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _describe(token: Token) -> str:
    if token.kind == "END":
        return "the end of the text"
    if token.kind == "STRING":
        return f"the string {token.quote}{token.value}{token.quote}"
    return f"'{token.value}'"


class _Parser:
    def __init__(self, text: str, sources: Sequence[str] = SOURCES) -> None:
        self.text = text
        self.sources = sources
        self.plain_sources = tuple(s for s in sources if not s.endswith("[]"))
        self.tokens = tokenize(text)
        self.tok: Token = next(self.tokens)
        self.ahead: Token | None = None

    # -- token plumbing ---------------------------------------------------------------

    def at(self, kind: str) -> bool:
        """Is the current token of `kind`? (A call, so a type checker does not carry an
        earlier test of `self.tok` past an `advance()`.)"""
        return self.tok.kind == kind

    def advance(self) -> Token:
        token = self.tok
        if self.ahead is not None:
            self.tok, self.ahead = self.ahead, None
        else:
            self.tok = next(self.tokens)
        return token

    def peek(self) -> Token:
        if self.ahead is None:
            self.ahead = next(self.tokens)
        return self.ahead

    def error(self, message: str, offset: int, hint: str | None = None) -> TemplateError:
        return TemplateError(message, template=self.text, offset=offset, hint=hint)

    # -- grammar ----------------------------------------------------------------------

    def parse(self) -> tuple[Part, ...]:
        parts: list[Part] = []
        while self.tok.kind != "END":
            if self.tok.kind == "TEXT":
                token = self.advance()
                parts.append(Text(token.value, token.start))
            else:  # OPEN: the lexer yields nothing else outside an expression
                parts.append(self.expression())
        return tuple(parts)

    def expression(self, optional: bool = False) -> Expr:
        opener = self.advance()
        source = self.source()
        path = self.path(source)
        spec = self.type_clause()
        default: Any = NO_DEFAULT
        default_at = -1
        if self.at("PIPE"):
            self.advance()
            if self.at("OPEN"):  # a fallback reference: `| ${env.X}`
                default_at = self.tok.start
                default = self.expression(optional=True).reference
            else:
                token = self.advance()  # the lexer always yields DEFAULT after PIPE
                default, default_at = self.default_value(token), token.start
        annotations = []
        while self.at("ANNOTATION"):
            name, _, value = self.advance().value.partition(" ")
            annotations.append((name, value.strip()))
        if self.tok.kind != "CLOSE":
            expect = "'}'" if default_at >= 0 else ("'|' or '}'" if spec else "'as', '|' or '}'")
            raise self.unexpected(expect)
        closer = self.advance()
        type_name = spec.value_type if spec is not None else None
        reference = Reference(source, tuple(path), type_name, default, self.text[opener.start : closer.end], spec, tuple(annotations), optional)
        return Expr(reference, opener.start, closer.end, default_at)

    def source(self) -> str:
        token = self.tok
        if token.kind != "NAME":
            what = "an empty '${}'" if token.kind == "CLOSE" else _describe(token)
            raise self.error(
                f"expected a source after '${{', found {what}",
                token.start,
                "a template starts with one of: " + ", ".join(self.sources),
            )
        self.advance()
        name = token.value
        if name not in self.plain_sources:
            hint = did_you_mean(name, self.plain_sources) or "known sources: " + ", ".join(self.sources)
            raise self.error(f"unknown source '{name}'", token.start, hint)
        if name + "[]" in self.sources and self.tok.kind == "LBRACKET" and not self.tok.space_before:
            if self.peek().kind == "RBRACKET":  # `response[]`: the current chunk of a stream
                self.advance()
                self.advance()
                return name + "[]"
        return name

    def path(self, source: str) -> list[Step]:
        path: list[Step] = []
        while self.tok.kind in ("DOT", "LBRACKET") and not self.tok.space_before:
            step = self.advance()
            token = self.tok
            if step.kind == "DOT":
                if token.kind == "NAME" and not token.space_before:
                    path.append(self.advance().value)
                    continue
                hint = f"use [{token.value}] to index a list" if token.kind == "INT" else None
                raise self.error("expected a name after '.'", step.end, hint)
            if token.kind == "INT":
                path.append(int(self.advance().value))
            elif token.kind == "STRING":
                path.append(self.advance().value)
            elif token.kind == "STAR":
                self.advance()
                path.append(WILDCARD)
            elif token.kind == "RBRACKET":
                hint = "only 'response[]' (the current stream chunk) is written with an empty '[]'"
                raise self.error("expected an index or a quoted key inside '[]'", token.start, hint)
            elif token.kind == "NAME":
                raise self.error(
                    f"expected an index or a quoted key inside '[]', found '{token.value}'",
                    token.start,
                    f"write [\"{token.value}\"] for a key, or .{token.value}",
                )
            else:
                raise self.error(f"expected an index or a quoted key after '[', found {_describe(token)}", token.start)
            if not self.at("RBRACKET"):
                raise self.error(f"expected ']', found {_describe(self.tok)}", self.tok.start)
            self.advance()
        return path

    def type_clause(self) -> TypeSpec | None:
        if not (self.tok.kind == "NAME" and self.tok.value == "as"):
            return None
        keyword = self.advance()
        token = self.tok
        if token.kind != "TYPE":
            raise self.error(
                f"expected a type after 'as', found {_describe(token)}",
                token.start if token.kind != "END" else keyword.end,
                "types: " + ", ".join(TYPES),
            )
        self.advance()
        try:
            return parse_type(token.value)
        except TypeSyntaxError as exc:
            hint = exc.hint
            if exc.message.startswith("unknown type"):
                word = token.value.split("[", 1)[0].split(";", 1)[0]
                hint = did_you_mean(word, TYPES, TYPE_ALIASES) or did_you_mean(word.split("/", 1)[0], TYPES, TYPE_ALIASES) or "types: " + ", ".join(TYPES)
            raise self.error(exc.message, token.start + exc.offset, hint) from None

    def default_value(self, token: Token) -> Any:
        if token.quote in ("'", '"'):
            return token.value
        if token.quote in ("[", "{"):
            try:
                return load_flow(token.value)
            except ValueError as exc:
                raise self.error(f"the default is not a valid YAML list or mapping: {exc}", token.start) from None
        return resolve_plain(token.value)

    def unexpected(self, expect: str) -> TemplateError:
        token = self.tok
        hint = None
        if token.kind == "NAME" and "as" in expect:
            hint = f"write 'as {token.value}'" if token.value in TYPES else did_you_mean(token.value, ["as"])
        elif token.kind in ("DOT", "LBRACKET") and token.space_before:
            hint = "a path has no spaces in it"
        return self.error(f"expected {expect}, found {_describe(token)}", token.start, hint)
