"""The pipeline flows (flows/local_pipelines.yml) on the real model, end to end: `flowctl run`
starts the two llama servers, runs the workflow, prints its tokens, and stops them.

Slow (the first run on a machine builds llama-cpp-python; afterwards the shared venv is
reused). Run under the lock: `flock /tmp/flowctl-slow.lock pytest tests/local_model`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO_ROOT
from support.procs import port_in_use

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]

FLOW = REPO_ROOT / "flows" / "local_pipelines.yml"
PORTS = (8012, 8013)
SETUP_DEADLINE = 2400.0
EVENT = re.compile(r"^\s*(?P<at>[\d.]+) ms\s+(?P<node>\S+) (?P<state>\w+)")


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[tuple[str, str], float]]:
    for port in PORTS:
        if port_in_use(port):
            pytest.fail(f"port {port} (a llama server of the flow) is taken by another process")
    result = subprocess.run([sys.executable, "-m", "flowctl", "run", str(FLOW), "-v", *args], capture_output=True, text=True, timeout=SETUP_DEADLINE, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    for port in PORTS:
        assert not port_in_use(port), f"the llama server on {port} must be stopped when run ends"
    events = {(m["node"], m["state"]): float(m["at"]) for m in map(EVENT.match, result.stderr.splitlines()) if m}
    return result, events


def test_two_drafts_at_once_then_a_streamed_merge(tmp_path: Path) -> None:
    result, at = run(tmp_path, "-i", "prompt=Why is the sky blue?", "-i", "draft_tokens=24", "-i", "max_tokens=32")
    assert any(ch.isalpha() for ch in result.stdout), (result.stdout, result.stderr[-2000:])
    assert at["draft_example", "started"] < at["draft_short", "finished"] and at["draft_short", "started"] < at["draft_example", "finished"], at
    assert at["merge", "started"] >= max(at["draft_short", "finished"], at["draft_example", "finished"])


def test_a_route_on_the_task(tmp_path: Path) -> None:
    result, at = run(tmp_path, "-w", "route", "-i", "task=translate", "-i", "prompt=Good morning, my friend.", "-i", "max_tokens=24")
    assert any(ch.isalpha() for ch in result.stdout), (result.stdout, result.stderr[-2000:])
    assert ("translate", "finished") in at
    assert ("summarize", "skipped") in at and ("answer", "skipped") in at
