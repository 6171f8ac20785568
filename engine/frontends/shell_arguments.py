"""Per-run values out of `sh -c` code and into arguments.

model-compose writes values straight into the script a shell runs (`[sh, -c, 'ls -la
"${input.path}"']`), so a request's value becomes shell syntax. flowctl never lets request data
be parsed as code: it rewrites each per-run placeholder into a positional parameter the shell
expands as one word, and passes the value as an argument after the script. For any value a
script would have run correctly with, the command runs the same; a value carrying `;`, `$(...)`
or quotes stays text.

    >>> parameterise('ls -la "${input.path | .}"', ("input",))
    ('ls -la "$${1}"', ['${input.path | .}'])
    >>> parameterise("echo ${input.a} '${input.b}' done", ("input",))
    ('echo "$${1}" \\'\\'"$${2}"\\'\\' done', ['${input.a}', '${input.b}'])

(The script is still a template: `$${` is its literal `${`.)

Where the rewrite could change what the script means it returns None and the caller refuses
the flow as before: the whole script (or a command's name) is the value, the value sits in a
here-document, or in a `${...}` the shell itself expands.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..templating.ast import Expr
from ..templating.parser import parse_parts
from ..templating.rewrite import escape, unparse

_NONE, _SINGLE, _DOUBLE = "none", "single", "double"


class _QuoteState:
    """The quoting context a POSIX shell is in after reading some literal text. Command
    substitutions (`$(`, backquotes) open a fresh unquoted context, as the shell's do."""

    def __init__(self) -> None:
        self.stack: list[str] = [_NONE]
        self.words_in_command = 0  # words read of the current simple command (0: at its start)
        self.in_word = False
        self.unsafe = False  # a here-document or a shell `${` open: the rewrite could change meaning
        self.brace_depth = 0

    @property
    def top(self) -> str:
        return self.stack[-1]

    def read(self, text: str) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            top = self.top
            if top == _SINGLE:
                if c == "'":
                    self.stack.pop()
                i += 1
                continue
            if c == "\\":
                self._word()
                i += 2
                continue
            if top == _DOUBLE:
                if c == '"':
                    self.stack.pop()
                elif text.startswith("$(", i):
                    self.stack.append("$(")
                    i += 1
                elif text.startswith("${", i):
                    self.brace_depth += 1
                elif c == "}" and self.brace_depth:
                    self.brace_depth -= 1
                i += 1
                continue
            # unquoted, in a command substitution or not
            if c == "'":
                self._word()
                self.stack.append(_SINGLE)
            elif c == '"':
                self._word()
                self.stack.append(_DOUBLE)
            elif text.startswith("$(", i):
                self._word()
                self.stack.append("$(")
                self._command_start()
                i += 1
            elif c == "`":
                if top == "`":
                    self.stack.pop()
                else:
                    self._word()
                    self.stack.append("`")
                    self._command_start()
            elif c == ")" and top == "$(":
                self.stack.pop()
            elif text.startswith("${", i):
                self._word()
                self.brace_depth += 1
                i += 1
            elif c == "}" and self.brace_depth:
                self.brace_depth -= 1
            elif text.startswith("<<", i):
                self.unsafe = True
            elif c in ";&|\n(":
                self._command_start()
            elif c in " \t":
                self.in_word = False
            else:
                self._word()
            i += 1

    def _word(self) -> None:
        if not self.in_word:
            self.in_word = True
            self.words_in_command += 1

    def _command_start(self) -> None:
        self.words_in_command = 0
        self.in_word = False

    def placeholder(self, number: int) -> str | None:
        """What stands for positional parameter `number` here, or None where it cannot."""
        if self.unsafe or self.brace_depth:
            return None
        if self.top == _SINGLE:
            return f"'\"${{{number}}}\"'"  # close the quote, expand in double quotes, reopen
        if self.top == _DOUBLE:
            return f"${{{number}}}"
        if self.words_in_command == 0 or (self.words_in_command == 1 and self.in_word):
            return None  # the value would name the command to run: that is code
        self._word()
        return f'"${{{number}}}"'


def parameterise(script: str, runtime_sources: Sequence[str], first: int = 1) -> tuple[str, list[str]] | None:
    """`script` (a template) with each placeholder reading one of `runtime_sources` replaced by
    a positional parameter numbered from `first`, and the placeholders, in order, to pass as
    the arguments; None when a placeholder cannot be moved safely."""
    out: list[str] = []
    arguments: list[str] = []
    state = _QuoteState()
    for part in parse_parts(script):
        if not isinstance(part, Expr):
            state.read(part.value)
            out.append(escape(part.value))
            continue
        if part.reference.source not in runtime_sources:
            out.append(unparse(part.reference))
            state.read("x")  # a static value reads as a word of the command
            continue
        standing = state.placeholder(first + len(arguments))
        if standing is None:
            return None
        out.append(escape(standing))
        arguments.append(script[part.start:part.end])
    return "".join(out), arguments
