"""The record of a running `flowctl up`, for `flowctl down`, a second `up` and `flowctl run`.

`<state dir>/up.pid` (written before the services start, so `down` can stop an `up` that is
still starting) and `<state dir>/up.json` (its URLs and ports, written once it serves). A
record whose process is gone, or is not a flowctl process, or started at another time than
recorded (its pid was reused), is stale: it never stops a new `up` and never makes `down`
signal a stranger.

    pidfile = PidFile("flows/local_chat.yml")
    record, why_stale = pidfile.live()        # (UpRecord, None) while that `up` runs
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..engine.paths import state_dir_for
from ..nodes import proc


@dataclass
class UpRecord:
    """What `up` leaves in its state dir for `down` and for a second `up`."""

    pid: int
    flow: str
    start_ticks: int | None = None
    api: str | None = None
    ui: str | None = None
    host: str | None = None
    port: int | None = None
    ui_port: int | None = None
    base_path: str | None = None
    started: float | None = None


class PidFile:
    def __init__(self, flow_file: str | Path) -> None:
        self.dir = state_dir_for(flow_file)
        self.pid_path = self.dir / "up.pid"
        self.json_path = self.dir / "up.json"
        self.flow = str(Path(flow_file).resolve())

    def read(self) -> UpRecord | None:
        """The recorded `up`, or None (no record, or an unreadable one)."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        record = UpRecord(pid=pid, flow=self.flow)
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self.json_path.read_text())
            if data.get("pid") == pid:
                record = UpRecord(**{k: v for k, v in data.items() if k in UpRecord.__dataclass_fields__})
        return record

    def live(self) -> tuple[UpRecord | None, str | None]:
        """(the record if its process is a live flowctl, else None; why a record is stale)."""
        record = self.read()
        if record is None:
            return None, None
        if record.pid == os.getpid():
            return None, None
        if not proc.alive(record.pid):
            return None, f"process {record.pid} is gone"
        cmdline = proc.command_line(record.pid)
        if cmdline is not None and "flowctl" not in cmdline:
            return None, f"process {record.pid} is not flowctl ({cmdline[:60]})"
        ticks = proc.start_ticks(record.pid)
        if record.start_ticks is not None and ticks is not None and ticks != record.start_ticks:
            return None, f"process {record.pid} is another process than the one recorded"
        return record, None

    def write_pid(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.pid_path, f"{os.getpid()}\n")
        _atomic_write(self.json_path, json.dumps(asdict(UpRecord(pid=os.getpid(), flow=self.flow, start_ticks=proc.start_ticks(os.getpid()))), indent=2) + "\n")

    def write_serving(self, record: UpRecord) -> None:
        _atomic_write(self.json_path, json.dumps(asdict(record), indent=2) + "\n")

    def remove(self, pid: int | None = None) -> None:
        """Remove the record (only if it still names `pid`, when given)."""
        if pid is not None:
            current = self.read()
            if current is not None and current.pid != pid:
                return
        for path in (self.json_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["PidFile", "UpRecord"]
