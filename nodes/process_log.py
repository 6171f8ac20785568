"""A service's log file: its output, line by line, each line stamped with the local time it
was written, and flowctl's supervision events between (`<time> [flowctl] started pid 12`), in
`<state dir>/logs/<node id>.log` (`log_file`); and its last lines kept in memory for error
messages. `engine/logs.py` reads these files (`flowctl logs`, the log route of the API).

    log = ProcessLog()
    log.open(log_file(state_dir, "llm"))       # a file over LOG_ROTATE_BYTES moves to llm.log.1
    log.line("INFO: Uvicorn running")           # the process's own output
    log.event("ready after 3.1s")               # a supervision event
    log.close()

A line's stamp is split off again by `split_stamp` (a line written before stamps existed, or
by anything else, has none):

    >>> split_stamp("2025-06-01T12:00:03.120+02:00 INFO: Uvicorn running")
    ('2025-06-01T12:00:03.120+02:00', 'INFO: Uvicorn running')
    >>> split_stamp("no stamp here")
    (None, 'no stamp here')
"""

from __future__ import annotations

import contextlib
import datetime
import re
from collections import deque
from pathlib import Path
from typing import IO

#: a log file larger than this (in characters written, about bytes) is moved aside to
#: `<node>.log.1` (replacing the one before), at start and while the process runs
LOG_ROTATE_BYTES = 20 * 1024 * 1024

#: how an event of flowctl's own is marked in a service's log (after the stamp)
EVENT_MARK = "[flowctl] "

_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?) ")


def log_file(state_dir: Path, node_id: str) -> Path:
    """Where the log of service `node_id` of the flow whose state dir is `state_dir` lives."""
    return state_dir / "logs" / f"{node_id}.log"


def stamp() -> str:
    """The local time now, as a log line starts with it (milliseconds, UTC offset)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def split_stamp(line: str) -> tuple[str | None, str]:
    """(the line's stamp or None, the rest)."""
    match = _STAMP.match(line)
    if match is None:
        return None, line
    return match.group(1), line[match.end() :]


class ProcessLog:
    def __init__(self, keep: int = 30) -> None:
        #: the process's last lines (not the events)
        self.tail: deque[str] = deque(maxlen=keep)
        #: lines of output written since `open`
        self.lines_written = 0
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._size = 0

    def open(self, path: Path) -> None:
        """Append to `path` from now on (moving a large old log aside first)."""
        self.close()
        self._path = path
        self.lines_written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if path.stat().st_size > LOG_ROTATE_BYTES:
                path.replace(path.with_name(path.name + ".1"))
        self._reopen()

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def closed(self) -> bool:
        return self._file is None

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def line(self, line: str) -> None:
        """One line of the process's output."""
        self.tail.append(line)
        self.lines_written += 1
        self._write(line)

    def event(self, text: str) -> None:
        """A supervision event, beside the process's own lines."""
        for part in text.splitlines() or [""]:
            self._write(EVENT_MARK + part)

    def last(self, lines: int) -> str:
        """The last `lines` lines of output, or `(no output)`."""
        return "\n".join(list(self.tail)[-lines:]) or "(no output)"

    def _write(self, line: str) -> None:
        if self._file is not None:
            text = f"{stamp()} {line}\n"
            with contextlib.suppress(ValueError, OSError):
                self._file.write(text)
                self._size += len(text)
                if self._size > LOG_ROTATE_BYTES:
                    self._rotate()

    def _rotate(self) -> None:
        """A chatty server's log moves aside while it runs, not only at the next start."""
        path = self._path
        if path is None:
            return
        self.close()
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".1"))
        self._reopen()

    def _reopen(self) -> None:
        assert self._path is not None
        self._file = open(self._path, "a", buffering=1, encoding="utf-8", errors="replace")
        self._size = self._file.tell()


__all__ = ["EVENT_MARK", "LOG_ROTATE_BYTES", "ProcessLog", "log_file", "split_stamp", "stamp"]
