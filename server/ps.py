"""`flowctl ps [FLOW]`: what a running `flowctl up` of FLOW serves, and how its services are.

It reads the `up`'s record in FLOW's state dir (`pidfile.py`: pid, start time, URLs) and asks
that `up` its `/ready` (the same answer load balancers and the web UI get), then prints a
table: one row per service (state, pid, port, restarts, uptime, why it last went down, its
URL), and one indented row per item of any list of objects a service reports (a service with
replicas lists each; whatever the items carry under the table's column names shows).
`--json` prints the record and `/ready`'s answer as one object (`"up": false` when nothing
runs). Nothing up is not an error: it says so and exits 0, as `docker compose ps` does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..engine.errors import ExitCode
from ..nodes.base import duration
from .auth import ENV_VAR
from .console import wants_color
from .pidfile import PidFile, UpRecord

#: the table's headings; `_row` fills them from a service's /ready entry
COLUMNS: tuple[str, ...] = ("SERVICE", "TYPE", "STATE", "PID", "PORT", "RESTARTS", "UPTIME", "LAST EXIT", "URL")

_STATE_COLOURS = {"ready": "32", "failed": "31", "starting": "33", "restarting": "33", "degraded": "33", "pending": "2", "stopped": "2"}


def ps(flow: str | Path, *, as_json: bool = False) -> int:
    pidfile = PidFile(flow)
    record, stale = pidfile.live()
    out = sys.stdout
    if record is None:
        why = stale or f"no `flowctl up` of it is running (no record in {pidfile.dir})"
        if as_json:
            out.write(json.dumps({"flow": str(flow), "up": False, "why": why}, indent=2) + "\n")
        else:
            out.write(f"{flow} is not up: {why}\nstart it with `flowctl up {flow}` (or `-d` for the background)\n")
        return ExitCode.OK
    ready, problem = _ask_ready(record)
    if as_json:
        answer: dict[str, Any] = {"flow": str(flow), "up": True, "pid": record.pid, "started": record.started, "api": record.api, "ui": record.ui}
        if ready is not None:
            answer.update(ready)
        if problem:
            answer["problem"] = problem
        out.write(json.dumps(answer, indent=2) + "\n")
        return ExitCode.OK
    out.write(_render(str(flow), record, ready, problem, colour=wants_color(out)))
    return ExitCode.OK


def _ask_ready(record: UpRecord) -> tuple[dict[str, Any] | None, str | None]:
    """(/ready's answer, or None with why not)."""
    if not record.api:
        return None, "its services are still starting; the API answers once they are up (`flowctl logs -f` shows the progress)"
    import httpx

    headers = {"Authorization": f"Bearer {os.environ[ENV_VAR]}"} if os.environ.get(ENV_VAR) else {}
    try:
        response = httpx.get(f"{record.api}/ready", headers=headers, timeout=5.0, trust_env=False)
    except httpx.HTTPError as exc:
        return None, f"it does not answer on {record.api} ({type(exc).__name__}: {exc})"
    if response.status_code == 401:
        return None, f"{record.api} wants an API key: set {ENV_VAR}"
    try:
        body = response.json()
    except ValueError:
        return None, f"{record.api}/ready answered {response.status_code} without JSON"
    if not isinstance(body, dict) or not isinstance(body.get("services"), dict):
        return None, f"{record.api}/ready answered {response.status_code} without a services list"
    return body, None


def _render(flow: str, record: UpRecord, ready: Mapping[str, Any] | None, problem: str | None, *, colour: bool) -> str:
    now = time.time()
    up_for = f" for {duration(now - record.started)}" if record.started else ""
    state = "ready" if ready and ready.get("ready") else "not ready" if ready else "starting"
    lines = [f"{flow}: up{up_for} (pid {record.pid}), {state}"]
    for name, url in (("API", record.api), ("web UI", record.ui)):
        if url:
            lines.append(f"  {name:<7} {url}")
    if problem:
        lines.append(f"  {problem}")
    if ready:
        for key, label in (("reload_error", "last reload failed"), ("restart_needed", "restart needed for")):
            if ready.get(key):
                value = ready[key]
                lines.append(f"  {label}: {', '.join(value) if isinstance(value, list) else value}")
        rows = [COLUMNS, *_rows(ready["services"], now)]
        lines.append("")
        lines += _table(rows, colour)
    return "\n".join(lines) + "\n"


def _rows(services: Mapping[str, Any], now: float) -> Iterator[tuple[str, ...]]:
    for node_id, info in services.items():
        if not isinstance(info, dict):
            continue
        yield _row(node_id, info, now)
        for key, value in info.items():  # per-item detail a service reports (replicas, ...)
            if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
                for index, item in enumerate(value):
                    name = str(item.get("id", item.get("name", index)))
                    if key in ("replicas", "instances"):
                        # flowctl's own replicas are named `<node>.<index>` already
                        yield _row(f"  {name}" if name.startswith(f"{node_id}.") else f"  {node_id}/{name}", item, now)
                    else:
                        yield _row(f"  {node_id}.{key}[{name}]", item, now)


def _row(name: str, info: Mapping[str, Any], now: float) -> tuple[str, ...]:
    state = str(info.get("state") or "")
    reason = info.get("reason")
    if reason and state != "ready":
        state += f" ({_clip(str(reason), 48)})"
    started = info.get("started")
    uptime = duration(now - started) if isinstance(started, int | float) and info.get("pid") else ""
    return (
        name,
        str(info.get("type") or ""),
        state,
        _cell(info.get("pid")),
        _cell(info.get("port")),
        _cell(info.get("restarts")),
        uptime,
        _clip(str(info.get("last_exit") or ""), 40),
        str(info.get("url") or ""),
    )


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table(rows: list[tuple[str, ...]], colour: bool) -> list[str]:
    # columns that are empty in every row are left out (a flow without ports shows no PORT)
    keep = [i for i in range(len(COLUMNS)) if i < 3 or any(row[i] for row in rows[1:])]
    widths = {i: max(len(row[i]) for row in rows) for i in keep}
    out = []
    for number, row in enumerate(rows):
        cells = []
        for i in keep:
            cell = row[i].ljust(widths[i]) if i != keep[-1] else row[i]
            if colour and number > 0 and i == 2:
                word = row[i].split(" ", 1)[0]
                cell = f"\x1b[{_STATE_COLOURS.get(word, '0')}m{cell}\x1b[0m"
            elif colour and number == 0:
                cell = f"\x1b[1m{cell}\x1b[0m"
            cells.append(cell)
        out.append("  ".join(cells).rstrip())
    return out


__all__ = ["COLUMNS", "ps"]
