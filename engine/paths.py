"""Where a flow keeps its runtime state: `.flowctl/<flow file stem>/` beside the flow file
(logs, stamps of non-venv setups, the pid file of a detached `up`)."""

from __future__ import annotations

from pathlib import Path


def state_dir_for(flow_file: str | Path) -> Path:
    path = Path(flow_file).resolve()
    return path.parent / ".flowctl" / path.stem
