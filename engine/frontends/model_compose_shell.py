"""Per-run values in `sh -c` code, passed as positional parameters instead of pasted in.

model-compose pastes its `${...}` values into the text of a command, so a value written
inside the code of `sh -c CODE` becomes shell syntax: a request value of `"; rm -rf ~; "`
would run. flowctl never parses a per-run value as code. Where model-compose examples write
one there, flowctl passes it to the shell as a positional parameter and writes the parameter
in its place, quoted for where it stands, so the shell reads the value and never parses it:

    [sh, -c, 'printf "%s" "${input.id}"']   →   [sh, -c, 'printf "%s" "$1"', sh, '${input.id}']

    >>> as_positional('ls -la "${input.path}" | head -${input.n}', 0)
    ('ls -la "$1" | head -"$2"', ['${input.path}', '${input.n}'])
    >>> as_positional("echo '${input.word}!'", 0)
    ('echo \\'\\'"$1"\\'!\\'', ['${input.word}'])

Inside double quotes the result is exactly model-compose's for any value; outside quotes the
value is one argument where model-compose would split it at spaces (and expand `*`).
A command whose whole code is a per-run value gets no such help: that would let a request
choose the program.
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


def as_positional(code: str, taken: int) -> tuple[str, list[str]]:
    """`code` (template text) with each `${...}` replaced by positional parameter `taken+1`,
    `taken+2`, ..., quoted for where it stands; and those templates, in order."""
    out: list[str] = []
    values: list[str] = []
    state = "plain"  # or "single", "double": the quotes the next character is inside
    escaped = False
    for part in parse_parts(code):
        if isinstance(part, Expr):
            values.append(code[part.start : part.end])
            number = taken + len(values)
            parameter = escape(f"${number}" if number < 10 else f"${{{number}}}")
            out.append({"double": parameter, "plain": f'"{parameter}"', "single": f"'\"{parameter}\"'"}[state])
            continue
        for char in part.value:
            if escaped:
                escaped = False
            elif char == "\\" and state != "single":
                escaped = True
            elif char == "'" and state != "double":
                state = "single" if state == "plain" else "plain"
            elif char == '"' and state != "single":
                state = "double" if state == "plain" else "plain"
        out.append(escape(part.value))
    return "".join(out), values


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


__all__ = ["SHELLS", "as_positional", "code_index", "taken_parameters", "whole_reference", "with_parameters"]
