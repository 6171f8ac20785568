"""Reading a flow's logs: each service's (`<state dir>/logs/<node id>.log`, written by
`nodes/process_log.py`) and flowctl's own (`<state dir>/up.log`, written by `up`'s console),
for `flowctl logs` and for the API's log route (`server/routes_logs.py`). Both read through
here and nowhere else.

- `pick_sources` turns names into files: a name must be one of the flow's services (or
  `flowctl`, flowctl's own log); a path is never a name; an unknown one gets a did-you-mean.
- `tail` reads the last lines backwards, by blocks (a 100 MB log costs a few blocks), from
  the rotated file (`<node>.log.1`) too when the current one is short.
- `Follower` hands out lines as they are written, across rotations (the file moved aside and
  a new one started) and truncation; `follow` is its async loop, `merged` orders the tails of
  several sources by time.

    source = pick_sources(state_dir, ["llm"], known=["llm-env", "llm"])[0]
    follower = Follower(source)
    for line in follower.start(tail=100):   # the last 100 lines, then
        print(line.text)
    lines, rotated = follower.poll()        # whatever was written since
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import difflib
import heapq
import itertools
import os
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..nodes.process_log import log_file, split_stamp
from .errors import InputError, ServiceNotFound

#: the name of flowctl's own log among the services' (`flowctl logs flowctl`)
SELF = "flowctl"
#: seconds between two looks at a followed file
POLL_SECONDS = 0.2
_BLOCK = 64 * 1024
#: a line longer than this (a runaway process printing without newlines) is cut into pieces
_MAX_LINE = 64 * 1024


def own_log_file(state_dir: Path) -> Path:
    """flowctl's own log for the flow whose state dir is `state_dir`."""
    return state_dir / "up.log"


@dataclass(frozen=True)
class LogSource:
    name: str
    path: Path


@dataclass(frozen=True)
class LogLine:
    source: str
    text: str
    #: when it was written (the line's stamp), or None for a line without one
    stamp: str | None = None

    @property
    def time(self) -> float:
        """Seconds since the epoch, for ordering (0 without a stamp)."""
        if self.stamp is None:
            return 0.0
        try:
            return datetime.datetime.fromisoformat(self.stamp).timestamp()
        except ValueError:
            return 0.0


def check_name(name: str) -> None:
    """Refuse anything that is not a plain name before it comes near a path."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError("node", f"'{name[:80]}' is not a node id", hint="give the id of a service node, as in the flow file, or `flowctl`")


def present(state_dir: Path) -> list[str]:
    """The names that have a log file now (services by name, then flowctl)."""
    names = []
    with contextlib.suppress(OSError):
        names = sorted(p.name[: -len(".log")] for p in (state_dir / "logs").iterdir() if p.name.endswith(".log") and p.is_file())
    if own_log_file(state_dir).is_file():
        names.append(SELF)
    return names


def replica_logs(names: Iterable[str], service: str) -> list[str]:
    """The replicas of `service` among log `names` (`llm.0`, `llm.1`, ...), by index.

    >>> replica_logs(["llm", "llm.1", "llm.0", "llm.x", "llm-env", "llm.10"], "llm")
    ['llm.0', 'llm.1', 'llm.10']
    """
    prefix = service + "."
    found = [name for name in names if name.startswith(prefix) and name[len(prefix) :].isdigit()]
    return sorted(found, key=lambda name: int(name[len(prefix) :]))


def pick_sources(state_dir: Path, names: Sequence[str], known: Sequence[str] | None) -> list[LogSource]:
    """The logs to read for `names` (all, when empty). `known`: the flow's service ids, or
    None when the flow could not be loaded (then the log files present are what is known).
    Raises InputError for a path, ServiceNotFound for an unknown name."""
    for name in names:
        check_name(name)
    on_disk = present(state_dir)
    allowed = [*known, *(replica for service in known for replica in replica_logs(on_disk, service)), SELF] if known is not None else on_disk
    if not names:
        chosen = [name for name in allowed if name in on_disk]
    else:
        chosen = []
        for name in names:
            if name not in allowed:
                match = difflib.get_close_matches(name, allowed, n=1, cutoff=0.5)
                hint = f"did you mean '{match[0]}'?" if match else ("logs: " + ", ".join(allowed) if allowed else "no service has run yet")
                raise ServiceNotFound(name, hint=hint)
            replicas = replica_logs(on_disk, name)
            # a service with replicas means all of them (`llm` -> llm.0, llm.1, ...)
            for each in ([name] if name in on_disk or not replicas else []) + replicas:
                if each not in chosen:
                    chosen.append(each)
    return [LogSource(name, own_log_file(state_dir) if name == SELF else log_file(state_dir, name)) for name in chosen]


# -- the last lines ---------------------------------------------------------------------------


def tail(source: LogSource, count: int | None) -> Iterator[LogLine]:
    """The last `count` lines of the source (None: all of them, the rotated file's first),
    reading backwards, by blocks."""
    follower = Follower(source)
    try:
        yield from follower.start(count)
    finally:
        follower.close()


def merged(tails: Iterable[Iterable[LogLine]]) -> Iterator[LogLine]:
    """Lines of several sources in the order they were written (a line without a stamp stays
    after the line before it in its own file)."""

    def keyed(lines: Iterable[LogLine]) -> Iterator[tuple[float, LogLine]]:
        last = 0.0
        for line in lines:
            if line.stamp is not None:
                last = line.time
            yield last, line

    for _, line in heapq.merge(*(keyed(lines) for lines in tails), key=lambda pair: pair[0]):
        yield line


def _whole_lines(path: Path, end: int | None) -> Iterator[bytes]:
    """The lines of `path` up to offset `end` (None: to its end), read by blocks."""
    try:
        handle = open(path, "rb")
    except OSError:
        return
    with handle:
        left = end if end is not None else os.fstat(handle.fileno()).st_size
        pending = b""
        while left > 0:
            block = handle.read(min(_BLOCK, left))
            if not block:
                break
            left -= len(block)
            pieces = (pending + block).split(b"\n")
            pending = pieces.pop()
            for piece in pieces:
                yield piece.rstrip(b"\r")
        if pending:
            yield pending.rstrip(b"\r")


def _last_lines(handle: BinaryIO, end: int, count: int) -> tuple[list[bytes], int]:
    """The last `count` whole lines before offset `end`, and the offset of the first byte
    after the last whole line (a partial line at `end` is left to follow)."""
    position = end
    data = b""
    while position > 0 and data.count(b"\n") <= count and len(data) < (count + 1) * _BLOCK:
        step = min(_BLOCK, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
    whole_end = data.rfind(b"\n") + 1
    partial = len(data) - whole_end
    lines = data[:whole_end].splitlines()
    if position > 0 and len(lines) > count:
        lines = lines[1:]  # the first may be the end of a line that began before the read
    return (lines[-count:] if count else []), end - partial


class Follower:
    """One log file, read from a point on as it grows. Rotation (`<node>.log` moved to
    `<node>.log.1`, a new one started: another inode at the path) is noticed on the next
    poll: the old file's last lines are read, then the new one from its start."""

    def __init__(self, source: LogSource) -> None:
        self.source = source
        self._handle: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._partial = b""

    def start(self, tail: int | None) -> Iterator[LogLine]:
        """Open the file (if it exists yet), and return its last `tail` lines (None: all of
        them, read lazily; 0: none); polls go on from there."""
        self._open()
        handle = self._handle
        rotated = self.source.path.with_name(self.source.path.name + ".1")
        if tail is None:
            if handle is None:
                return self._lines(_whole_lines(rotated, None))
            end = os.fstat(handle.fileno()).st_size
            after = _last_lines(handle, end, 0)[1]
            handle.seek(after)
            return self._lines(itertools.chain(_whole_lines(rotated, None), _whole_lines(self.source.path, after)))
        lines: list[bytes] = []
        if handle is not None:
            end = os.fstat(handle.fileno()).st_size
            lines, after = _last_lines(handle, end, tail)
            handle.seek(after)
        if len(lines) < tail:
            try:
                with open(rotated, "rb") as old:
                    lines = _last_lines(old, os.fstat(old.fileno()).st_size, tail - len(lines))[0] + lines
            except OSError:
                pass
        return self._lines(lines)

    def _lines(self, raw: Iterable[bytes]) -> Iterator[LogLine]:
        return (self._line(line) for line in raw)

    def poll(self) -> tuple[list[LogLine], bool]:
        """(the lines written since the last look, whether the file was rotated meanwhile)."""
        if self._handle is None:
            self._open()
            if self._handle is None:
                return [], False
        raw = self._read_new()
        rotated = False
        try:
            stat = os.stat(self.source.path)
        except OSError:
            stat = None  # between the move and the new file: look again next time
        if stat is not None and self._identity != (stat.st_dev, stat.st_ino):
            rotated = True
            raw += self._read_new()  # what was written between the first read and the move
            raw += self._flush_partial()
            self.close()
            self._open()
            raw += self._read_new()
        elif stat is not None and self._handle is not None and stat.st_size < self._handle.tell():
            rotated = True  # truncated in place: start over
            self._handle.seek(0)
            self._partial = b""
            raw += self._read_new()
        return [self._line(line) for line in raw], rotated

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

    def _open(self) -> None:
        try:
            handle = open(self.source.path, "rb")
        except OSError:
            self._handle = None
            return
        stat = os.fstat(handle.fileno())
        self._handle, self._identity, self._partial = handle, (stat.st_dev, stat.st_ino), b""

    def _read_new(self) -> list[bytes]:
        assert self._handle is not None
        data = self._partial + self._handle.read()
        if not data:
            return []
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > _MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        return [line.rstrip(b"\r") for line in lines]

    def _flush_partial(self) -> list[bytes]:
        partial, self._partial = self._partial, b""
        return [partial] if partial else []

    def _line(self, raw: bytes) -> LogLine:
        stamp, text = split_stamp(raw.decode("utf-8", errors="replace"))
        return LogLine(self.source.name, text, stamp)


@dataclass(frozen=True)
class Rotated:
    """`follow` yields this when the file was rotated (or truncated) since the last look."""

    source: str


async def follow(source: LogSource, tail: int | None, *, poll: float = POLL_SECONDS) -> AsyncGenerator[LogLine | Rotated, None]:
    """The last `tail` lines, then each new line as it is written, until the consumer stops
    (closing the generator closes the file)."""
    follower = Follower(source)
    try:
        for line in list(follower.start(tail)):
            yield line
        while True:
            lines, rotated = follower.poll()
            if rotated:
                yield Rotated(source.name)
            for line in lines:
                yield line
            if not lines:
                await asyncio.sleep(poll)
    finally:
        follower.close()


__all__ = ["POLL_SECONDS", "SELF", "Follower", "LogLine", "LogSource", "Rotated", "check_name", "follow", "merged", "own_log_file", "pick_sources", "present", "tail"]
