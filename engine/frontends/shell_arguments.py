"""Per-run values out of `sh -c` code and into arguments.

model-compose writes values straight into the script a shell runs (`[sh, -c, 'ls -la
"${input.path}"']`), so a request's value becomes shell syntax. flowctl never lets request data
be parsed as code: it rewrites each per-run placeholder into a positional parameter the shell
expands as one word, and passes the value as an argument after the script. For any value a
script would have run correctly with, the command runs the same; a value carrying `;`, `$(...)`
or quotes stays text.

    >>> as_positional('ls -la "${input.path | .}"', 0)
    ('ls -la "$${1}"', ['${input.path | .}'])
    >>> as_positional("echo ${input.a} '${input.b}' done", 0)
    ('echo "$${1}" \\'\\'"$${2}"\\'\\' done', ['${input.a}', '${input.b}'])
    >>> as_positional('eval "${input.code}"', 0)
    Traceback (most recent call last):
    ...
    flowctl.engine.frontends.shell_arguments.NotAnArgument: ${input.code} is an argument of `eval`, which could run it as code

(The script is still a template: `$${` is its literal `${`.)

Where the rewrite could change what the script means, `NotAnArgument` says why and the
caller refuses the flow at its line: the value would be the program the shell runs, an
argument of a command that runs its arguments (`eval`, `xargs`, `sh -c`, `python -c`...), in
a here-document, or inside a `${...}` the shell itself expands.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from ..templating.ast import Expr, Reference
from ..templating.parser import parse_parts
from ..templating.rewrite import escape, unparse

#: shells whose `-c` code takes positional parameters after it (`$0` first)
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh"})
#: programs that run their `-c`/`-e` argument as code: a request value must never be in it
CODE_FLAGS = {"sh": "-c", "bash": "-c", "zsh": "-c", "dash": "-c", "ksh": "-c", "fish": "-c",
              "python": "-c", "python3": "-c", "node": "-e", "perl": "-e", "ruby": "-e"}  # fmt: skip
#: the sources whose values change from run to run (request data, upstream outputs)
RUNTIME_SOURCES = ("input", "nodes", "run", "item", "index", "loop", "hook")
#: commands that run (or hand on) their arguments as code or as a program: a value passed to
#: one of them could still become code, so it is refused there
_EVALUATING = frozenset({"eval", "exec", "source", ".", "trap", "command", "builtin", "env", "xargs", "sudo", "nohup", "time",
                         "timeout", "nice", "setsid", "watch", "su", "ssh", "find", "parallel", "sed", "awk",
                         "sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "node", "perl", "ruby", "php", "lua"})
#: words that may come before a command's program
_RESERVED = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"})


class NotAnArgument(ValueError):
    """A value in shell code where a positional parameter would not be a plain argument."""

_NONE, _SINGLE, _DOUBLE = "none", "single", "double"


class _QuoteState:
    """The quoting context a POSIX shell is in after reading some literal text. Command
    substitutions (`$(`, backquotes) open a fresh unquoted context, as the shell's do."""

    def __init__(self) -> None:
        self.stack: list[str] = [_NONE]
        self.words: list[str] = []  # the current simple command's words so far (quotes dropped)
        self.in_word = False
        self.outer: list[tuple[list[str], bool]] = []  # the commands around open substitutions
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
                else:
                    self._char(c)
                i += 1
                continue
            if c == "\\":
                self._char(text[i + 1:i + 2])
                i += 2
                continue
            if top == _DOUBLE:
                if c == '"':
                    self.stack.pop()
                elif text.startswith("$(", i):
                    self._open_substitution("$(")
                    i += 1
                elif text.startswith("${", i):
                    self.brace_depth += 1
                elif c == "}" and self.brace_depth:
                    self.brace_depth -= 1
                else:
                    self._char(c)
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
                self._open_substitution("$(")
                i += 1
            elif c == "`":
                if top == "`":
                    self._close_substitution()
                else:
                    self._open_substitution("`")
            elif c == ")" and top == "$(":
                self._close_substitution()
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
                self._char(c)
            i += 1

    def _open_substitution(self, kind: str) -> None:
        """A command substitution: a command of its own inside the current word."""
        if self.top != _DOUBLE:
            self._char("x")
        self.outer.append((self.words, self.in_word))
        self.stack.append(kind)
        self._command_start()

    def _close_substitution(self) -> None:
        self.stack.pop()
        self.words, self.in_word = self.outer.pop()

    def _word(self) -> None:
        if not self.in_word:
            self.in_word = True
            self.words.append("")

    def _char(self, c: str) -> None:
        self._word()
        self.words[-1] += c

    def _command_start(self) -> None:
        self.words = []
        self.in_word = False

    def program(self) -> str | None:
        """The program of the current command, once a word names it (assignments and
        reserved words skipped); None while none does."""
        for index, word in enumerate(self.words):
            if index == len(self.words) - 1 and self.in_word:
                return None  # still being written: a value here would extend it
            if word in _RESERVED or ("=" in word and word.split("=", 1)[0].isidentifier()):
                continue
            return posixpath.basename(word)
        return None

    def placeholder(self, number: int, value: str) -> str:
        """What stands for positional parameter `number` (holding `value`) here; raises
        NotAnArgument where a parameter would not be a plain argument."""
        if self.unsafe:
            raise NotAnArgument(f"{value} is in a here-document")
        if self.brace_depth:
            raise NotAnArgument(f"{value} is inside a `${{...}}` the shell expands")
        program = self.program()
        if program is None:
            raise NotAnArgument(f"{value} would be (part of) the program the shell runs")
        if program in _EVALUATING:
            raise NotAnArgument(f"{value} is an argument of `{program}`, which could run it as code")
        if self.top == _SINGLE:
            return f"'\"${{{number}}}\"'"  # close the quote, expand in double quotes, reopen
        if self.top == _DOUBLE:
            return f"${{{number}}}"
        self._char("x")
        return f'"${{{number}}}"'


def as_positional(code: str, taken: int, runtime_sources: Sequence[str] = RUNTIME_SOURCES) -> tuple[str, list[str]]:
    """`code` (a template) with each placeholder reading one of `runtime_sources` replaced by
    positional parameter `taken+1`, `taken+2`, ..., and those placeholders, in order, to pass
    as the arguments. Raises NotAnArgument where one cannot be moved safely."""
    out: list[str] = []
    arguments: list[str] = []
    state = _QuoteState()
    for part in parse_parts(code):
        if not isinstance(part, Expr):
            state.read(part.value)
            out.append(escape(part.value))
            continue
        if part.reference.source not in runtime_sources:
            out.append(unparse(part.reference))
            state.read("x")  # a static value reads as a word of the command
            continue
        value = code[part.start:part.end]
        out.append(escape(state.placeholder(taken + len(arguments) + 1, value)))
        arguments.append(value)
    return "".join(out), arguments


def code_index(argv: Sequence[str]) -> int | None:
    """Where the code is in `[PROGRAM, ..., FLAG, CODE, ...]` for a program that runs its
    `-c`/`-e` argument as code (`sh -c`, `python3 -c`, `node -e`); None for any other command."""
    flag = CODE_FLAGS.get(posixpath.basename(argv[0])) if argv else None
    if flag is None or flag not in argv[1:]:
        return None
    index = list(argv).index(flag, 1) + 1
    return index if index < len(argv) else None


def whole_reference(text: str) -> Reference | None:
    """The reference `text` is, when it is exactly one `${...}`."""
    parts = parse_parts(text)
    return parts[0].reference if len(parts) == 1 and isinstance(parts[0], Expr) else None


def taken_parameters(argv: Sequence[str], index: int) -> int:
    """How many positional parameters (`$1`...) the code at `index` already has."""
    return max(len(argv) - index - 2, 0)


def with_parameters(argv: list[str], index: int, values: list[str]) -> list[str]:
    """`argv` with `values` added as the code's next positional parameters (and a `$0`, the
    shell's name, when the code had none)."""
    if not values:
        return argv
    zero = [] if len(argv) > index + 1 else [posixpath.basename(argv[0])]
    return [*argv, *zero, *values]


__all__ = ["CODE_FLAGS", "RUNTIME_SOURCES", "SHELLS", "NotAnArgument", "as_positional", "code_index", "taken_parameters", "whole_reference", "with_parameters"]
