"""What flowctl prints while it works, and how.

Every command ends a failure with `flowctl: error: ...` on stderr (`error`; a message of
several lines keeps its first on that line and indents the rest). Short notes of commands
such as `down` are `flowctl: ...` lines (`say`).

`flowctl up` (and `flowctl run`, for the services it starts) install a `Console` instead,
which prints, compose-style, one line per message with the time and an aligned, per-source
prefix (`flowctl` for flowctl's own words, a node id for a service):

    12:00:03 flowctl | loading flows/local_chat.yml
    12:00:03 llm-env | environment up to date, setup skipped
    12:00:04 llm     | started pid 4242: /home/me/.cache/flowctl/envs/...
    12:00:09 llm     | ready (1.4s; 2312 lines of output in its log)

- `color` (the default on a terminal; `NO_COLOR` turns it off, `FORCE_COLOR` on anywhere):
  the prefix in the source's own colour, the time dimmed, errors red, the banner bold;
- `plain` (the default when stderr is not a terminal): the same lines without colour;
- `json`: one JSON object per line: `{"time", "source", "kind", "text"}` (and the URLs on
  the banner).

A message of several lines keeps its prefix on each line. A service's own output (a model
server's loader, pip's build) goes to its log file (`flowctl logs NODE`), and to the console
only with `verbose`; the console shows what flowctl says about it (started, ready, exited
with the last lines of output, a heartbeat with the latest line while a long step runs).
flowctl's own lines also go, plain and dated, to `up`'s log (`<state dir>/up.log`,
`flowctl logs flowctl`), which never holds a service's output (each has its own file).

    console = Console(sys.stderr, fmt="auto", verbose=False, names=["llm-env", "llm"])
    console.service(ServiceLine("llm", "ready (1.4s)"))
    console.banner("serving flow.yml", {"API": "http://127.0.0.1:8080/api"})
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import IO, Literal

from ..engine.logs import SELF
from ..nodes.base import LineKind, ServiceLine
from ..nodes.process_log import ProcessLog

Format = Literal["auto", "color", "plain", "json"]
FORMATS: tuple[Format, ...] = ("auto", "color", "plain", "json")


# ANSI SGR codes: the colours compose cycles through, then their bright variants
_PALETTE = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_DIM, _BOLD, _RED, _GREEN, _YELLOW, _RESET = "2", "1", "31", "32", "33", "\x1b[0m"


def _sgr(code: str, text: str) -> str:
    return f"\x1b[{code}m{text}{_RESET}"


def wants_color(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Colour on a terminal, unless NO_COLOR is set; anywhere when FORCE_COLOR is set
    (no-color.org, and the convention many tools share)."""
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR"):
        return True
    try:
        return stream.isatty() and environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Console:
    def __init__(self, stream: IO[str] | None = None, *, fmt: Format = "auto", verbose: bool = False, names: Iterable[str] = ()) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if fmt == "auto":
            fmt = "color" if wants_color(self.stream) else "plain"
        self.fmt = fmt
        self.verbose = verbose
        self._names: dict[str, str] = {}  # source -> its colour
        self._width = len(SELF)
        self._lock = threading.Lock()
        self._file: ProcessLog | None = None
        self.add_names(names)

    # -- configuration -------------------------------------------------------------------------

    def add_names(self, names: Iterable[str]) -> None:
        """Sources to align the prefixes for (a flow's services), in the order they get colours."""
        for name in names:
            if name not in self._names:
                self._names[name] = _PALETTE[len(self._names) % len(_PALETTE)]
                self._width = max(self._width, len(name))

    def log_to(self, log: ProcessLog | None) -> None:
        """Also write flowctl's own lines (not services' output) to this file."""
        self._file = log

    # -- what is said ------------------------------------------------------------------------

    def service(self, line: ServiceLine) -> None:
        """A line about a service (the supervisor's `LogSink`)."""
        if line.kind is LineKind.OUTPUT and not self.verbose:
            return
        self._emit(line.node, line.kind.value, line.text, to_file=line.kind is not LineKind.OUTPUT)

    def say(self, text: str, kind: str = "info") -> None:
        """One of flowctl's own messages (`kind`: info, warning or error)."""
        self._emit(SELF, kind, text)

    def banner(self, title: str, urls: Mapping[str, str], hints: Mapping[str, str] | None = None) -> None:
        """The lines a newcomer looks for: what is served where, and what to type next."""
        if self.fmt == "json":
            self._write(json.dumps({"time": _now_iso(), "source": SELF, "kind": "banner", "text": title, **{k.lower().replace(" ", "_"): v for k, v in urls.items()}}) + "\n")
            self._to_file(title)
            return
        self._emit(SELF, "title", title)
        rows = [f"  {name:<8} {url}" for name, url in urls.items()]
        rows += [f"  {name:<8} {text}" for name, text in (hints or {}).items()]
        self._emit(SELF, "banner", "\n".join(rows))

    def line(self, source: str, text: str) -> None:
        """A line shown under `source`'s prefix as it is, no time of its own (`flowctl logs`)."""
        self._emit(source, "line", text, to_file=False, timed=False)

    # -- formatting ------------------------------------------------------------------------------

    def _emit(self, source: str, kind: str, text: str, *, to_file: bool = True, timed: bool = True) -> None:
        if source not in self._names and source != SELF:
            self.add_names([source])
        lines = text.splitlines() or [""]
        if self.fmt == "json":
            self._write(json.dumps({"time": _now_iso(), "source": source, "kind": kind, "text": text}) + "\n")
        else:
            stamp = datetime.datetime.now().strftime("%H:%M:%S ") if timed else ""
            prefix = f"{source:<{self._width}} |"
            if self.fmt == "color":
                colour = _BOLD if source == SELF else self._names[source]
                prefix = _sgr(colour, prefix)
                stamp = _sgr(_DIM, stamp.rstrip()) + " " if stamp else ""
                lines = [self._paint(kind, line) for line in lines]
            self._write("".join(f"{stamp}{prefix} {line}\n" for line in lines))
        if to_file:
            self._to_file(text if source == SELF else "\n".join(str(ServiceLine(source, line)) for line in lines))

    def error(self, text: str) -> None:
        """A command's failure, as `error()` prints it (see there)."""
        lines = text.strip().splitlines() or ["unknown error"]
        self._to_file("error: " + "\n".join(lines))
        if self.fmt == "json":
            self._write(json.dumps({"time": _now_iso(), "source": SELF, "kind": "error", "text": "\n".join(lines)}) + "\n")
            return
        out = _error_text(lines)
        self._write(_sgr(_RED, out.rstrip("\n")) + "\n" if self.fmt == "color" else out)

    @staticmethod
    def _paint(kind: str, line: str) -> str:
        if kind == "error":
            return _sgr(_RED, line)
        if kind == "warning":
            return _sgr(_YELLOW, line)
        if kind == "title":
            return _sgr(_BOLD + ";" + _GREEN, line)
        if kind == "banner":
            return _sgr(_BOLD, line)
        if kind == "progress":
            return _sgr(_DIM, line)
        return line

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed terminal must not take `up` down

    def _to_file(self, text: str) -> None:
        if self._file is not None:
            with self._lock:
                for line in text.splitlines() or [""]:
                    self._file.line(line)


def _now_iso() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


# -- the command's own lines ----------------------------------------------------------------------

_active: Console | None = None


def install(console: Console | None) -> None:
    """Route `say` (and `error`, in JSON) through `console` from now on (None: back to plain
    `flowctl: ` lines)."""
    global _active
    _active = console


def active() -> Console | None:
    return _active


def say(message: str) -> None:
    if _active is not None:
        _active.say(message)
        return
    print(f"flowctl: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    if _active is not None:
        _active.say(message, "warning")
        return
    print(f"flowctl: warning: {message}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    """A command's failure: the same `flowctl: error:` line for every command (a JSON line
    under `up --log-format json`; also in `up`'s own log)."""
    if _active is not None:
        _active.error(message)
        return
    sys.stderr.write(_error_text(message.strip().splitlines() or ["unknown error"]))
    sys.stderr.flush()


def _error_text(lines: list[str]) -> str:
    return f"flowctl: error: {lines[0]}\n" + "".join(f"  {line}\n" for line in lines[1:])


__all__ = ["FORMATS", "SELF", "Console", "Format", "active", "error", "install", "say", "wants_color", "warn"]
