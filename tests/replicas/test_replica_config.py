"""What a flow may say about replicas, and the clear errors for what it may not: a fixed port
shared by replicas, a placement block that does not fit its engine, `engine: ray` without
ray installed (and nothing imports ray), `service:` naming what cannot serve. One replica
with `port: auto` keeps `${nodes.llm.output.url}` working."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from replicas_support import replica_argv, replicas_flow
from support.fake import expected_text
from support.flows import q
from support.paths import PYTHON, REPO_ROOT

from flowctl.engine.errors import ServiceError
from flowctl.nodes.placement import PlacementSpec, open_placement


def flowctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "flowctl", *args], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    flow = tmp_path / "flow.yml"
    flow.write_text(text)
    return flowctl("validate", str(flow))


def edited(old: str, new: str, **kw: object) -> str:
    text = replicas_flow(2, "m", **kw)  # type: ignore[arg-type]
    assert old in text
    return text.replace(old, new)


def test_the_replica_flow_validates(tmp_path: Path) -> None:
    result = validate(tmp_path, replicas_flow(2, "m", placement={"engine": "local", "resources": {"GPU": 1}}))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("old", "new", "at", "says"),
    [
        ("    port: auto\n", "    port: 8000\n", "replicas:", "2 replicas cannot all listen on port 8000: write `port: auto`"),
        ("    replicas: 2\n", "    replicas: 0\n", "replicas:", "greater than or equal to 1"),
        ("    stop_timeout: 3\n", "    stop_timeout: 3\n    placement: {engine: local, spread: strict}\n", "placement:", "`spread` lays replicas over Ray nodes"),
        ("    stop_timeout: 3\n", "    stop_timeout: 3\n    placement: {address: auto}\n", "placement:", "`address` names a Ray cluster; it needs `engine: ray`"),
        ("    stop_timeout: 3\n", "    stop_timeout: 3\n    placement: {resources: {gpu_slot: 1}}\n", "placement:", "knows only the GPU resource"),
        ("    stop_timeout: 3\n", "    stop_timeout: 3\n    placement: {engin: local}\n", "placement:", "unknown key 'engin' in node 'llm' (process-start) (did you mean 'engine'?)"),
        ("    service: llm\n", "    service: nosuch\n", "service:", "unknown node 'nosuch'"),
        ("    service: llm\n", "    url: http://127.0.0.1:1/\n    service: llm\n", "service:", "either `url:` or `service:`"),
        ("    service: llm\n    path: /v1/chat/completions\n", "    url: http://127.0.0.1:1/\n    path: /v1/chat/completions\n", "path:", "`path:` goes with `service:`"),
        ("    path: /v1/chat/completions\n", "    path: v1/chat\n", "path:", "must start with /"),
    ],
)
def test_bad_replica_settings_are_located_errors(tmp_path: Path, old: str, new: str, at: str, says: str) -> None:
    text = edited(old, new)
    line = next(number for number, each in enumerate(text.splitlines(), 1) if each.strip().startswith(at.strip()))
    result = validate(tmp_path, text)
    assert result.returncode == 1
    assert f"flow.yml:{line}:" in result.stderr and says in result.stderr, result.stderr


def test_service_must_name_a_node_that_serves_http(tmp_path: Path) -> None:
    text = edited("  generate:\n", "  env:\n    type: env-setup\n    packages: []\n  generate:\n").replace("    service: llm\n", "    service: env\n")
    result = validate(tmp_path, text)
    assert result.returncode == 1 and "`service: env`: a 'env-setup' node serves no HTTP" in result.stderr, result.stderr


# flowctl as an install without Ray sees it: `ray` cannot be found (CI installs the extra)
_WITHOUT_RAY = (
    "import importlib.util, sys; real = importlib.util.find_spec; "
    "importlib.util.find_spec = lambda name, *a: None if name == 'ray' else real(name, *a); "
    "from flowctl.cli import main; sys.argv[0] = 'flowctl'; sys.exit(main())"
)


def test_engine_ray_without_ray_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = edited("    stop_timeout: 3\n", "    stop_timeout: 3\n    placement: {engine: ray, resources: {GPU: 1}}\n")
    line = text.splitlines().index("    placement: {engine: ray, resources: {GPU: 1}}") + 1
    flow = tmp_path / "flow.yml"
    flow.write_text(text)
    result = subprocess.run([sys.executable, "-c", _WITHOUT_RAY, "validate", str(flow)], capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert result.returncode == 1
    assert f"flow.yml:{line}:" in result.stderr and "pip install 'flowctl[ray]'" in result.stderr, result.stderr
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ServiceError, match=r"pip install 'flowctl\[ray\]'"):
        open_placement(PlacementSpec.model_construct(engine="ray", resources={}, address=None, spread=None), "llm")


def test_nothing_imports_ray() -> None:
    code = "import sys, flowctl.cli, flowctl.server.app, flowctl.nodes.registry, flowctl.nodes.placement, flowctl.nodes.replica_set; print('ray' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT))
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_one_replica_on_port_auto_still_has_its_url(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yml"
    flow.write_text(
        "version: 1\nname: auto\nnodes:\n"
        "  llm:\n    type: process-start\n"
        f"    command: {q(replica_argv(tokens=4))}\n"
        "    port: auto\n"
        f"    readiness: {q({'http': '/v1/models', 'timeout': 30, 'interval': 0.05})}\n"
        "    restart: never\n"
        "  generate:\n    type: http-stream\n"
        f"    url: {q('${nodes.llm.output.url}/v1/chat/completions')}\n"
        f"    body: {q({'model': 'qwen2-7b-instruct', 'messages': [{'role': 'user', 'content': 'hi'}], 'stream': True})}\n"
        f"    output: {q('${response[].choices[0].delta.content}')}\n"
        "  chat:\n    type: sse-sink\n"
        f"    source: {q('${nodes.generate.output as stream/text}')}\n"
    )
    result = flowctl("run", str(flow))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected_text(4).strip()
    assert "[llm]" in result.stderr or "llm " in result.stderr  # one replica keeps the node's own name
