"""`flowctl validate`, `graph` and `schema` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.paths import REPO_ROOT

FLOWCTL = [sys.executable, "-m", "flowctl"]
VLLM_FLOW = REPO_ROOT / "flows" / "vllm_chat.yml"


def flowctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWCTL, *args], capture_output=True, text=True, timeout=60)


def test_validate_the_shipped_vllm_flow() -> None:
    result = flowctl("validate", str(VLLM_FLOW))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_validate_points_at_a_misspelt_port(tmp_path: Path) -> None:
    text = VLLM_FLOW.read_text()
    lines = text.splitlines()
    line_no = next(i for i, line in enumerate(lines, 1) if line.strip() == "port: 8000")
    bad = tmp_path / "bad.yml"
    bad.write_text(text.replace("    port: 8000", "    prot: 8000"))
    result = flowctl("validate", str(bad))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"flowctl: error: {bad}:{line_no}:5: unknown key 'prot' in node 'vllm' (process-start) (did you mean 'port'?)"


def test_validate_a_missing_file() -> None:
    result = flowctl("validate", "no/such/flow.yml")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_graph_shows_the_seed_chain_in_mermaid() -> None:
    result = flowctl("graph", str(VLLM_FLOW))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("graph TD\n")
    assert "env-setup" in out and "process-start" in out and "http-stream" in out and "sse-sink" in out
    assert "n_vllm_env --> n_vllm" in out
    assert "n_vllm --> n_chat" in out
    assert "n_chat ==>|stream| n_reply" in out


def test_graph_json_and_dot() -> None:
    data = json.loads(flowctl("graph", str(VLLM_FLOW), "--format", "json").stdout)
    assert {node["id"] for node in data["nodes"]} == {"vllm-env", "vllm", "chat", "reply"}
    assert {(e["source"], e["target"]) for e in data["edges"]} == {("vllm-env", "vllm"), ("vllm", "chat"), ("chat", "reply")}
    dot = flowctl("graph", str(VLLM_FLOW), "--format", "dot").stdout
    assert dot.startswith("digraph flow {") and "n_vllm -> n_chat;" in dot and "n_vllm_env [label=<vllm-env<br/><i>env-setup</i>>, shape=box3d];" in dot


def test_schema_is_json_schema_of_the_native_form() -> None:
    result = flowctl("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert {"nodes", "workflows", "server"} <= set(schema["properties"])
    assert "ProcessStartSpec" in schema["$defs"]
    assert schema["$defs"]["ProcessStartSpec"]["additionalProperties"] is False
