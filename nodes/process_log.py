"""A managed process's log: its output, line by line, with flowctl's supervision events between
(`[flowctl <time>] ...`), in `<state dir>/logs/<node id>.log` (what `flowctl logs NODE` prints),
and its last lines kept in memory for error messages.

    log = ProcessLog()
    log.open(state_dir / "logs" / "llm.log")   # a file over LOG_ROTATE_BYTES moves to llm.log.1
    log.line("INFO: Uvicorn running")           # the process's own output
    log.event("ready after 3.1s")               # a supervision event
    log.close()
"""

from __future__ import annotations

import contextlib
import datetime
from collections import deque
from pathlib import Path
from typing import IO

#: a log file larger than this (in characters written, about bytes) is moved aside to
#: `<node>.log.1` (replacing the one before), at start and while the process runs
LOG_ROTATE_BYTES = 20 * 1024 * 1024


class ProcessLog:
    def __init__(self, keep: int = 30) -> None:
        #: the process's last lines (not the events)
        self.tail: deque[str] = deque(maxlen=keep)
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._size = 0

    def open(self, path: Path) -> None:
        """Append to `path` from now on (moving a large old log aside first)."""
        self.close()
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if path.stat().st_size > LOG_ROTATE_BYTES:
                path.replace(path.with_name(path.name + ".1"))
        self._reopen()

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
        self._write(line)

    def event(self, text: str) -> None:
        """A supervision event, beside the process's own lines."""
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        self._write(f"[flowctl {stamp}] {text}")

    def last(self, lines: int) -> str:
        """The last `lines` lines of output, or `(no output)`."""
        return "\n".join(list(self.tail)[-lines:]) or "(no output)"

    def _write(self, line: str) -> None:
        if self._file is not None:
            with contextlib.suppress(ValueError, OSError):
                self._file.write(line + "\n")
                self._size += len(line) + 1
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


__all__ = ["LOG_ROTATE_BYTES", "ProcessLog"]
