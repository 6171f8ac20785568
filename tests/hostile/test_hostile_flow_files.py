"""Hostile flow files (issue 15, point 3 and the YAML half of point 4): alias bombs, huge
files and deep nesting end in a located `FlowError` in milliseconds and a few MB, in
`validate`, `graph`, `run`, `up` and hot reload, never in a traceback or gigabytes.

Memory is measured with tracemalloc around the load (peak of new allocations); time is
bounded by each test's timeout, not asserted."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import httpx
import pytest
from support.console import messages
from support.paths import PYTHON, REPO_ROOT
from support.waiting import wait_until

from flowctl.engine.errors import FlowError, TemplateError
from flowctl.engine.loader import MAX_DEPTH, MAX_FLOW_BYTES, load_file, load_text
from flowctl.engine.templating import parse

pytestmark = pytest.mark.timeout(60)

#: nine levels of nine aliases each: 9**10 strings once expanded, 470 bytes on disk
ALIAS_BOMB = "\n".join(
    ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    + ["nodes: {}"]
) + "\n"
DEEP_FLOW_SEQUENCE = "nodes: " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_FLOW_MAPPING = "nodes: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"
DEEP_BLOCK = "nodes:\n" + "".join(" " * i + "a:\n" for i in range(1, 400)) + " " * 400 + "b: 1\n"

#: a minimal flow with no services, so `up` serves it at once
SMALL_FLOW = """\
nodes:
  chat:
    type: http-stream
    url: http://127.0.0.1:9/v1/chat/completions
    body: {prompt: "${input.prompt}"}
  reply: {type: sse-sink, source: "${nodes.chat.output as stream/text}"}
"""


def peak_bytes_of(action) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        try:
            action()
        except BaseException as exc:
            return exc, tracemalloc.get_traced_memory()[1]
        return None, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_alias_bomb_is_a_located_error_in_a_few_mb() -> None:
    error, peak = peak_bytes_of(lambda: load_text(ALIAS_BOMB, "bomb.yml"))
    assert isinstance(error, FlowError), error
    assert error.location is not None and error.location.file == "bomb.yml" and error.location.line > 1
    assert "alias" in str(error)
    assert peak < 5 * 1024 * 1024, f"loading the bomb allocated {peak / 1e6:.1f} MB"


def test_aliases_that_stay_small_still_load() -> None:
    doc = load_text("base: &base {model: m, stream: true}\none: *base\ntwo: {<<: *base, stream: false}\n")
    assert doc.data["one"] == {"model": "m", "stream": True}
    assert doc.data["two"]["stream"] is False


@pytest.mark.parametrize("text", [DEEP_FLOW_SEQUENCE, DEEP_FLOW_MAPPING, DEEP_BLOCK], ids=["flow-seq", "flow-map", "block"])
def test_deep_nesting_is_a_located_error(text: str) -> None:
    error, peak = peak_bytes_of(lambda: load_text(text, "deep.yml"))
    assert isinstance(error, FlowError), repr(error)
    assert f"more than {MAX_DEPTH} levels" in str(error)
    assert error.location is not None and error.location.file == "deep.yml"
    assert peak < 5 * 1024 * 1024


def test_a_deep_template_default_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="levels deep"):
        parse("${input.x | " + "[" * 3000 + "]" * 3000 + "}")


def test_a_huge_flow_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    with path.open("w") as out:
        line = "# " + "x" * 1022 + "\n"
        for _ in range(MAX_FLOW_BYTES // len(line) + 64):
            out.write(line)
    error, peak = peak_bytes_of(lambda: load_file(path))
    assert isinstance(error, FlowError) and "larger than" in str(error), error
    assert str(error).startswith(f"{path}:1:1:")
    assert peak < MAX_FLOW_BYTES + 1024 * 1024


def flowctl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=timeout, cwd=str(REPO_ROOT))


@pytest.mark.parametrize("command", [["validate"], ["graph"], ["run", "-i", "prompt=hi"], ["up", "--port", "0", "--ui-port", "0", "--no-reload"]])
@pytest.mark.parametrize("text", [ALIAS_BOMB, DEEP_FLOW_SEQUENCE], ids=["alias-bomb", "deep"])
def test_every_command_reports_the_location_without_a_traceback(tmp_path: Path, command: list[str], text: str) -> None:
    path = tmp_path / "flow.yml"
    path.write_text(text)
    result = flowctl(command[0], str(path), *command[1:])
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"flowctl: error: {path}:"), result.stderr
    assert "levels deep" in result.stderr or "alias" in result.stderr


def test_reload_refuses_bombs_and_huge_files_and_keeps_serving(flowctl_up, tmp_path: Path) -> None:
    up = flowctl_up(SMALL_FLOW, reload=True)

    def failures() -> list[str]:
        return [line for line in messages(up.log_text()) if line.startswith("reload failed")]

    saves = [
        (ALIAS_BOMB, "alias"),
        (DEEP_FLOW_SEQUENCE, "levels deep"),
        ("# " + "x" * (MAX_FLOW_BYTES + 10) + "\n", "larger than"),
    ]
    for index, (text, words) in enumerate(saves, start=1):
        up.flow_path.write_text(text)
        lines = wait_until(lambda: failures()[index - 1 :] or None, timeout=20, message=lambda: up.log_tail())  # noqa: B023  (called within the iteration)
        assert words in lines[0] and f"{up.flow_path}:" in lines[0], lines[0]
        ready = httpx.get(up.api + "/ready", timeout=5).json()
        assert words in ready["reload_error"]
    assert up.alive()
    assert "Traceback" not in up.log_text()
    assert httpx.get(up.api + "/workflows/reply", timeout=5).status_code == 200  # still the last good flow
