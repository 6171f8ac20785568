"""`flowctl logs [-f] [--tail N] [NODE...]`: the services' logs of a flow, compose-style.

All of them (every service that has a log, and flowctl's own, `flowctl`) interleaved in the
order they were written, each line under an aligned, coloured prefix; one node's log alone is
printed as it is (no prefix), as `docker logs` does. `-f` prints the tail and then follows
every chosen log as it grows, across rotations, until Ctrl-C (a service that has not started
yet is followed from its first line). Reading is `engine/logs.py`'s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .engine.errors import ExitCode, FlowctlError, UsageError
from .engine.logs import POLL_SECONDS, SELF, Follower, LogLine, merged, pick_sources, tail
from .engine.paths import state_dir_for
from .server.console import Console, say


def parse_tail(text: str) -> int | None:
    """`--tail N`: a count, or `all` (None)."""
    if text == "all":
        return None
    if not text.isdigit():
        raise UsageError(f"--tail takes a number of lines or `all`, not '{text[:20]}'")
    return int(text)


def show_logs(flow: str, names: Sequence[str], *, count: int | None, follow: bool, timestamps: bool, prefix: bool | None) -> int:
    state_dir = state_dir_for(flow)
    known = _services(flow)
    sources = pick_sources(state_dir, names, known)
    if follow and not names and known is not None:
        sources = pick_sources(state_dir, [*known, SELF], known)  # the ones not started yet too
    if not sources:
        say(f"no logs for {flow} yet: nothing has run (looked in {state_dir / 'logs'})")
        return ExitCode.OK
    if not follow:
        missing = [source.name for source in sources if not source.path.is_file()]
        if missing and len(missing) == len(sources):
            say(f"no log for {', '.join(missing)} yet: it has not run (looked in {state_dir / 'logs'})")
            return ExitCode.OK
    prefixed = len(sources) > 1 if prefix is None else prefix
    console = Console(sys.stdout, names=[s.name for s in sources])
    out = _Printer(console, prefixed, timestamps, [source.name for source in sources])
    if not follow:
        out.write(merged(tail(source, count) for source in sources))
        return ExitCode.OK
    followers = [Follower(source) for source in sources]
    try:
        out.write(merged([list(f.start(count)) for f in followers]))
        while True:
            quiet = True
            for follower in followers:
                lines, _rotated = follower.poll()
                if lines:
                    quiet = False
                    out.write(lines)
            if quiet:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:  # the way out of following
        return ExitCode.OK
    finally:
        for follower in followers:
            follower.close()


def _services(flow: str) -> list[str] | None:
    """The flow's service ids; None when it cannot be loaded (its logs are still readable)."""
    from .engine.flow import load_flow

    if not Path(flow).is_file():
        return None
    try:
        return list(load_flow(flow).services)
    except FlowctlError:
        return None


class _Printer:
    def __init__(self, console: Console, prefixed: bool, timestamps: bool, shown: Sequence[str]) -> None:
        self.console = console
        self.prefixed = prefixed
        self.timestamps = timestamps
        # flowctl's own log repeats its events about each service (`[llm] ready (1.2s)`),
        # which that service's log has too: shown side by side, each is printed once
        self.echoes = tuple(f"[{name}] " for name in shown if name != SELF) if SELF in shown else ()

    def write(self, lines: Iterable[LogLine]) -> None:
        stream = self.console.stream
        for line in lines:
            if line.source == SELF and self.echoes and line.text.startswith(self.echoes):
                continue
            text = f"{line.stamp} {line.text}" if self.timestamps and line.stamp else line.text
            if self.prefixed:
                self.console.line(line.source, text)
            else:
                stream.write(text + "\n")
        stream.flush()


__all__ = ["parse_tail", "show_logs"]
