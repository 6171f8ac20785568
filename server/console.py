"""What `flowctl` says on stderr: `flowctl: ...` lines, and `flowctl: error: ...` for failures
(a message of several lines keeps its first on the error line and indents the rest)."""

from __future__ import annotations

import sys


def say(message: str) -> None:
    print(f"flowctl: {message}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    lines = message.strip().splitlines() or ["unknown error"]
    print(f"flowctl: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(f"  {line}", file=sys.stderr)
    sys.stderr.flush()


__all__ = ["error", "say"]
