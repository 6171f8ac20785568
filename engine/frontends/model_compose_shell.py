"""Per-run values in `sh -c` code, passed as positional parameters instead of pasted in.

model-compose pastes its `${...}` values into the text of a command, so a value written
inside the code of `sh -c CODE` becomes shell syntax: a request value of `"; rm -rf ~; "`
would run. flowctl never parses a per-run value as code. Where model-compose examples write
one there, flowctl passes it to the shell as a positional parameter and writes the parameter
in its place, quoted for where it stands, so the shell reads the value and never parses it:

    [sh, -c, 'printf "%s" "${input.id}"']   →   [sh, -c, 'printf "%s" "$1"', sh, '${input.id}']

    >>> as_positional('ls -la "${input.path}" > "${input.dir}/out"', 0)
    ('ls -la "$1" > "$2/out"', ['${input.path}', '${input.dir}'])
    >>> as_positional('eval "${input.code}"', 0)
    Traceback (most recent call last):
    ...
    flowctl.engine.frontends.model_compose_shell.NotAnArgument: ${input.code} is an argument of `eval`, which could run it as code

Inside double quotes the result is exactly model-compose's for any value. Only that case is
passed so: a value outside double quotes (which model-compose would split at spaces, or
which single quotes would not protect), one that would be the program the shell runs, or an
argument of a command that runs its arguments (`eval`, `xargs`, `sh -c`...) is refused,
as before, with the fix.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from ..templating.ast import Expr, Reference
from ..templating.parser import parse_parts
from ..templating.rewrite import escape

#: shells whose `-c` code takes positional parameters after it (`$0` first)
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh"})


def code_index(argv: Sequence[str]) -> int | None:
    """Where the code is in `[sh, ..., -c, CODE, ...]`; None for any other command."""
    if not argv or posixpath.basename(argv[0]) not in SHELLS or "-c" not in argv[1:]:
        return None
    index = list(argv).index("-c", 1) + 1
    return index if index < len(argv) else None


def whole_reference(text: str) -> Reference | None:
    """The reference `text` is, when it is exactly one `${...}`."""
    parts = parse_parts(text)
    return parts[0].reference if len(parts) == 1 and isinstance(parts[0], Expr) else None


class NotAnArgument(ValueError):
    """A value in shell code where a parameter would not be a plain argument; says where."""


#: commands that run (or hand on) their arguments as code or as a program: a value passed to
#: one of them could still become code, so it is refused there
_EVALUATING = frozenset({"eval", "exec", "source", ".", "trap", "command", "builtin", "env", "xargs", "sudo", "nohup", "time",
                         "sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python3", "node", "perl", "ruby", "awk"})
_NOT_WORDS = str.maketrans({'"': " ", "'": " ", "(": " ", ")": " ", "`": " "})
_RESERVED = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{"})
#: what starts a new command (outside single quotes): its first word is the program
_SEPARATORS = (";", "&", "|", "(", ")", "\n", "`", "$(", "{", "}")


def as_positional(code: str, taken: int) -> tuple[str, list[str]]:
    """`code` (template text) with each `${...}` replaced by positional parameter `taken+1`,
    `taken+2`, ..., and those templates, in order. Only a value inside double quotes, as an
    argument of a command that does not evaluate its arguments, is passed so; anything else
    raises `NotAnArgument`."""
    out: list[str] = []
    values: list[str] = []
    state = "plain"  # or "single", "double": the quotes the next character is inside
    escaped = False
    segment = ""  # the current command's text so far
    for part in parse_parts(code):
        if isinstance(part, Expr):
            reference = code[part.start : part.end]
            if state != "double":
                raise NotAnArgument(f"{reference} is outside double quotes: write it inside them (\"{reference}\") to pass it as one argument")
            program = _program(segment)
            if program is None:
                raise NotAnArgument(f"{reference} would be the program the shell runs")
            if program in _EVALUATING:
                raise NotAnArgument(f"{reference} is an argument of `{program}`, which could run it as code")
            values.append(reference)
            number = taken + len(values)
            out.append(escape(f"${number}" if number < 10 else f"${{{number}}}"))
            segment += "x"
            continue
        for index, char in enumerate(part.value):
            if escaped:
                escaped = False
            elif char == "\\" and state != "single":
                escaped = True
            elif char == "'" and state != "double":
                state = "single" if state == "plain" else "plain"
            elif char == '"' and state != "single":
                state = "double" if state == "plain" else "plain"
            elif state != "single" and (char in _SEPARATORS or part.value.startswith("$(", index)) and (state == "plain" or char in "`$"):
                segment = ""
                continue
            segment += char
        out.append(escape(part.value))
    return "".join(out), values


def _program(segment: str) -> str | None:
    """The program of a command whose text so far is `segment` (quotes dropped), or None when
    no word is written yet (the next one is the program)."""
    for word in segment.translate(_NOT_WORDS).split():
        if word in _RESERVED or ("=" in word and word.split("=", 1)[0].isidentifier()):
            continue
        return posixpath.basename(word)
    return None


def with_parameters(argv: list[str], index: int, values: list[str]) -> list[str]:
    """`argv` with `values` added as the code's next positional parameters (and a `$0`, the
    shell's name, when the code had none)."""
    if not values:
        return argv
    zero = [] if len(argv) > index + 1 else [posixpath.basename(argv[0])]
    return [*argv, *zero, *values]


def taken_parameters(argv: Sequence[str], index: int) -> int:
    """How many positional parameters (`$1`...) the code at `index` already has."""
    return max(len(argv) - index - 2, 0)


__all__ = ["SHELLS", "NotAnArgument", "as_positional", "code_index", "taken_parameters", "whole_reference", "with_parameters"]
