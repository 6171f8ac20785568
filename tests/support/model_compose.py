"""Helpers for the model-compose frontend tests: a file's lowered spec, `flowctl run` on it as a
user would, and errors checked at the line they point to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.frontends import to_flow_spec
from flowctl.engine.loader import load_text

FLOWCTL = str(Path(sys.executable).with_name("flowctl"))


def spec_of(text: str) -> Any:
    return to_flow_spec(load_text(text, "flow.yml")).spec


def run(tmp_path: Path, text: str, *inputs: str, workflow: str | None = None, env: dict[str, str] | None = None) -> Any:
    """`flowctl run` the flow; its printed output, parsed when it is JSON."""
    path = tmp_path / "model-compose.yml"
    path.write_text(text)
    argv = [FLOWCTL, "run", str(path), *[arg for value in inputs for arg in ("-i", value)]]
    if workflow:
        argv += ["--workflow", workflow]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "FLOWCTL_HOME": str(tmp_path / "home"), **(env or {})})
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip()
    try:
        return json.loads(out)
    except ValueError:
        return out


def errors_of(text: str) -> list[FlowError]:
    with pytest.raises(FlowError) as caught:
        load_flow_text(text, "flow.yml")
    return list(getattr(caught.value, "errors", [caught.value]))


def line_of(text: str, marker: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if marker in line)


def assert_error_at(text: str, marker: str, message: str, hint: str | None = None) -> FlowError:
    """The flow fails to load with an error holding `message` on the first line holding `marker`."""
    errors = errors_of(text)
    found = [e for e in errors if message in e.message]
    assert found, "\n".join(map(str, errors))
    assert found[0].location is not None and found[0].location.line == line_of(text, marker), "\n".join(map(str, errors))
    if hint is not None:
        assert hint in (found[0].hint or ""), str(found[0])
    return found[0]
