"""The model-compose front end: the seed's file lowers to the native graph, every model-compose
key is either lowered or reported at its line, and a lowered flow really runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import FAKE_VLLM, PYTHON, REPO_ROOT
from support.procs import free_port

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow, load_flow_text
from flowctl.engine.frontends import to_flow_spec
from flowctl.engine.loader import load_file, load_text

SEED = REPO_ROOT / "flows" / "vllm_chat.model-compose.yml"
NATIVE = REPO_ROOT / "flows" / "vllm_chat.yml"
FLOWCTL = str(Path(sys.executable).with_name("flowctl"))
SEED_TEXT = SEED.read_text()

COMPONENT = """\
components:
  - id: vllm
    type: http-server
    port: 8000
    manage:
      start: [python, -m, vllm.entrypoints.openai.api_server, --port, "8000"]
    action:
      path: /v1/chat/completions
      body:
        model: m
        messages: [{role: user, content: "${input.prompt}"}]
        stream: true
      stream_format: json
      output: ${response[].choices[0].delta.content}
"""


def spec_of(text: str, file: str = "<string>"):
    return to_flow_spec(load_text(text, file)).spec


def errors_of(exc: FlowError) -> list[FlowError]:
    return list(getattr(exc, "errors", [exc]))


def line_of(text: str, marker: str | tuple[str, int]) -> int:
    """1-based line of the first line containing `marker` (or of its n-th such line)."""
    marker, nth = marker if isinstance(marker, tuple) else (marker, 1)
    lines = [number for number, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(lines) >= nth, f"{marker!r} not in text"
    return lines[nth - 1]


def lowering_error(text: str) -> FlowError:
    with pytest.raises(FlowError) as caught:
        load_flow_text(text, "flow.yml")
    return caught.value


def assert_error_at(text: str, marker: str | tuple[str, int], message: str, hint: str | None = None) -> None:
    exc = lowering_error(text)
    found = [e for e in errors_of(exc) if message in e.message]
    assert found, f"no error containing {message!r} in:\n{exc}"
    assert found[0].location is not None and found[0].location.line == line_of(text, marker), str(exc)
    if hint is not None:
        assert hint in (found[0].hint or ""), str(exc)


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLOWCTL, "validate", str(path)], capture_output=True, text=True, timeout=60)


# -- the seed ------------------------------------------------------------------------------


def _shape(flow):
    types = {node_id: node.spec.type for node_id, node in flow.nodes.items()}
    edges = {(types[u], types[v], data["stream"]) for u, v, data in flow.graph.edges(data=True)}
    workflow = next(iter(flow.workflows.values()))
    return {
        "services": [types[n] for n in flow.services],
        "run_nodes": [types[n] for n in workflow.run_nodes],
        "edges": edges,
        "output_type": workflow.output_type,
        "default": workflow.default,
        "inputs": {k: (v.type, v.default, v.required) for k, v in workflow.inputs.items() if k in ("prompt", "temperature")},
    }


def test_seed_lowers_to_the_native_graph() -> None:
    lowered, native = load_flow(SEED), load_flow(NATIVE)
    assert lowered.form == "model-compose"
    assert _shape(lowered) == _shape(native)
    assert _shape(lowered)["edges"] == {
        ("env-setup", "process-start", False),
        ("process-start", "http-stream", False),
        ("http-stream", "sse-sink", True),
    }
    assert list(lowered.workflows) == ["__default__"]  # what model-compose clients send as workflow_id
    workflow = lowered.workflows["__default__"]
    assert (workflow.title, workflow.description) == ("Chat with vLLM server", "Generate text responses using vLLM server")


def test_seed_lowered_nodes_keep_the_authors_commands_and_templates() -> None:
    spec = to_flow_spec(load_file(SEED)).spec
    assert (spec.server.port, spec.server.base_path, spec.server.ui_port) == (8080, "/api", 8081)
    install, server, job, sink = (spec.nodes[n] for n in ("component-install", "component", "job", "job-output"))
    assert install.type == "env-setup" and install.venv is False
    assert len(install.commands) == 1 and install.commands[0][:2] == ["bash", "-c"]  # one argv, as model-compose runs it
    assert install.commands[0][2].rstrip().endswith("pip install vllm")
    assert server.type == "process-start" and server.needs == ["component-install"]
    assert server.command[:2] == ["bash", "-c"]
    for part in ("--model Qwen/Qwen2-7B-Instruct", "--port 8000", "--served-model-name qwen2-7b-instruct", "--max-model-len 2048"):
        assert part in server.command[2]
    assert server.port == 8000 and server.readiness.tcp and server.restart.policy == "on-failure"
    assert job.type == "http-stream" and job.needs == ["component"]
    assert (job.method, job.url, job.stream_format) == ("POST", "http://127.0.0.1:8000/v1/chat/completions", "json")
    assert job.headers == {"Content-Type": "application/json"}
    assert job.body["messages"][0]["content"] == "${input.prompt as text}"
    assert job.body["temperature"] == "${input.temperature as number | 0.7}"
    assert job.output == "${response[].choices[0].delta.content}"
    assert sink.type == "sse-sink" and sink.source == "${nodes.job.output as stream/text}"


def test_graph_cli_prints_the_four_node_chain() -> None:
    result = subprocess.run([FLOWCTL, "graph", str(SEED)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("graph TD")
    for node_type in ("env-setup", "process-start", "http-stream", "sse-sink"):
        assert f"*{node_type}*" in out
    assert "n_component_install --> n_component" in out
    assert "n_component --> n_job" in out
    assert "n_job ==>|stream| n_job_output" in out


# -- flowctl validate points at the line ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "edit", "marker", "expected"),
    [
        ("misspelt", ("  port: 8000\n", "  prot: 8000\n"), "prot: 8000", "unknown key 'prot' in component (http-server) (did you mean 'port'?)"),
        ("unsupported", ("    stream_format: json\n", "    stream_format: json\n    completion: {type: polling}\n"), "completion:",
         "completion type 'polling' is not supported by flowctl"),
        ("template", ("${input.prompt as text}", "${input.prompt as imgae}"), "as imgae", "bad template in node 'job': unknown type 'imgae' (did you mean 'image'?)"),
    ],
)
def test_validate_reports_file_line_column(tmp_path: Path, name: str, edit: tuple[str, str], marker: str, expected: str) -> None:
    text = SEED_TEXT.replace(*edit)
    assert text != SEED_TEXT
    path = tmp_path / f"{name}.yml"
    path.write_text(text)
    result = validate(path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = line_of(text, marker)
    assert f"{path}:{line}:" in result.stderr and expected in result.stderr, result.stderr


def test_validate_reports_a_workflow_naming_an_unknown_component(tmp_path: Path) -> None:
    text = COMPONENT + "workflow:\n  component: vlm\n  output: ${output as text;sse-text}\n"
    path = tmp_path / "unknown.yml"
    path.write_text(text)
    result = validate(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{path}:{line_of(text, 'component: vlm')}:14: unknown component 'vlm' (did you mean 'vllm'?)" in result.stderr


def test_validate_accepts_the_seed() -> None:
    result = validate(SEED)
    assert result.returncode == 0, result.stderr
    assert "workflows: __default__" in result.stdout


# -- lowering rules -------------------------------------------------------------------------


def test_scripts_follow_model_compose_argv_semantics() -> None:
    text = """\
component:
  type: http-server
  install: [[pip, install, x], [echo, "${HOME}"]]
  build: make all
  start: [python, server.py, --port, "8000"]
  action: {path: /run}
workflow:
  output: ${output}
"""
    spec = spec_of(text)
    install = spec.nodes["component-install"]
    # a list of lists is several commands; a string (flowctl extension) runs in bash;
    # scripts are not templates in model-compose, so `${HOME}` reaches the shell
    assert install.commands == [["pip", "install", "x"], ["echo", "$${HOME}"], "make all"]
    assert spec.nodes["component"].command == ["python", "server.py", "--port", "8000"]
    flow = load_flow_text(text)
    assert flow.nodes["component-install"].fields["commands"].render({}) == [["pip", "install", "x"], ["echo", "${HOME}"], "make all"]


def test_start_string_runs_in_bash_and_manage_env_and_working_dir_apply(tmp_path: Path) -> None:
    text = """\
component:
  type: http-server
  port: 9000
  manage:
    working_dir: srv
    env: {HF_HOME: /tmp/hf}
    install: [pip, install, x]
    start: ./serve --port 9000
  action: {path: /run, method: GET}
workflow:
  output: ${output}
"""
    path = tmp_path / "flow.yml"
    path.write_text(text)
    spec = to_flow_spec(load_text(text, str(path))).spec
    server = spec.nodes["component"]
    assert server.command == "./serve --port 9000"
    assert server.cwd == str(tmp_path / "srv") and server.env == {"HF_HOME": "/tmp/hf"}
    install = spec.nodes["component-install"]
    assert install.env == {"HF_HOME": "/tmp/hf"}
    assert install.commands == [["bash", "-c", 'cd -- "$0" && exec "$@"', str(tmp_path / "srv"), "pip", "install", "x"]]
    assert spec.nodes["job"].url == "http://127.0.0.1:9000/run" and spec.nodes["job"].method == "GET"


def test_several_components_workflows_and_http_client() -> None:
    text = COMPONENT + """\
  - id: openai
    type: http-client
    base_url: https://api.example.com/v1
    headers: {Authorization: "Bearer ${env.KEY}", X-A: a}
    actions:
      - id: models
        method: GET
        path: /models
        headers: {X-A: b}
      - id: chat
        default: true
        endpoint: https://api.example.com/v1/chat/completions
        body: {messages: [{role: user, content: "${input.prompt}"}]}
workflows:
  - id: local
    jobs:
      - id: ask
        component: vllm
        input: ${input}
        output: ${output as stream/text}
  - id: models
    name: list-models
    component: openai
    action: models
  - id: cloud
    default: true
    job:
      component: openai
      output: ${output.choices[0].message.content}
"""
    flow = load_flow_text(text)
    spec = flow.spec
    assert set(flow.workflows) == {"local", "models", "cloud"}
    assert [w.default for w in flow.workflows.values()] == [False, False, True]
    assert flow.workflows["local"].output_node == "ask-output" and flow.workflows["local"].output_type == "stream/text"
    assert spec.nodes["ask"].needs == ["vllm"] and spec.nodes["ask"].url == "http://127.0.0.1:8000/v1/chat/completions"
    models = spec.nodes["models"]
    assert models.url == "https://api.example.com/v1/models" and models.stream_format is None and models.needs == []
    assert models.headers == {"Authorization": "Bearer ${env.KEY}", "X-A": "b"}  # the action's header wins
    assert spec.workflows["models"].openai.model == "list-models"
    cloud = spec.nodes["cloud"]
    assert cloud.url == "https://api.example.com/v1/chat/completions"
    # `${output.<path>}` over an action without `output:` becomes the request's own extraction
    assert cloud.output == "${response.choices[0].message.content}" and flow.workflows["cloud"].output_node == "cloud"
    assert flow.workflows["cloud"].output_type == "value"


def test_mapping_forms_and_noop_defaults_are_accepted() -> None:
    text = """\
controller:
  type: http-server
  runtime: native
  threaded: false
  max_concurrent_count: 4
  shutdown_timeout: 1m
components:
  vllm:
    type: http-server
    runtime: {type: native}
    start: [serve]
    actions:
      chat: {path: /c, stream_format: text}
workflows:
  chat:
    private: false
    jobs:
      main: {component: vllm, action: chat, repeat_count: 1}
"""
    flow = load_flow_text(text)
    assert flow.spec.server.max_concurrency == 4 and flow.spec.server.drain_timeout == 60.0
    assert flow.spec.server.base_path == "" and flow.spec.server.ui_port is None  # model-compose: root routes, no web UI
    assert list(flow.workflows) == ["chat"] and flow.workflows["chat"].default
    assert flow.workflows["chat"].output_node == "main-output"
    assert flow.spec.nodes["main-output"].source == "${nodes.main.output as stream/text}"


def test_jobs_find_the_default_component_and_action() -> None:
    two = COMPONENT + COMPONENT.replace("components:\n", "").replace("id: vllm", "id: other").replace("8000", "8001")
    text = two.replace("  - id: other\n", "  - id: other\n    default: true\n") + "workflow:\n  output: ${output}\n"
    flow = load_flow_text(text)
    assert flow.spec.nodes["job"].needs == ["other"] and "8001" in flow.spec.nodes["job"].url
    assert_error_at(two + "workflow:\n  output: ${output}\n", "workflow:", "names no component and the flow has several",
                    "mark one `default: true`")


def test_node_ids_stay_unique_and_usable() -> None:
    text = COMPONENT.replace("id: vllm", "id: 7b model") + "workflow:\n  id: 7b model\n  output: ${output as text;sse-text}\n"
    flow = load_flow_text(text)
    assert set(flow.nodes) == {"n7b-model", "n7b-model-2", "n7b-model-2-output"}


# -- errors point into the user's file ------------------------------------------------------

BASE = COMPONENT + "workflow:\n  output: ${output as text;sse-text}\n"


@pytest.mark.parametrize(
    ("text", "marker", "message", "hint"),
    [
        (BASE.replace("    port: 8000\n", "    port: 8000\n    clean: [rm]\n"), "clean:", "model-compose key 'clean' is not supported", None),
        ("controller:\n  type: http-server\n  runtime: docker\n" + BASE, "runtime: docker", "model-compose key 'runtime' is not supported",
         "`runtime: native`"),
        ("controller:\n  webui:\n    driver: static\n    static_dir: ui\n" + BASE, "driver: static", "web UI driver 'static'", None),
        ("controller:\n  webui:\n    driver: static\n    static_dir: ui\n" + BASE, "static_dir", "model-compose key 'static_dir'", None),
        ("controller:\n  base_pth: /api\n" + BASE, "base_pth", "unknown key 'base_pth' in controller", "did you mean 'base_path'?"),
        (BASE + "logger: {type: console}\n", "logger:", "model-compose key 'logger' is not supported", None),
        (BASE.replace("      stream_format: json\n", "      stream_formt: json\n"), "stream_formt", "unknown key 'stream_formt'",
         "did you mean 'stream_format'?"),
        (BASE.replace("stream_format: json", "stream_format: jsn"), "stream_format: jsn", "input should be 'json' or 'text'", None),
        (BASE.replace("      stream_format: json\n", ""), "output: ${response[]", "needs `stream_format: json` or `text`", None),
        (BASE.replace("type: http-server", "type: model"), "type: model", "component type 'model' is not supported", "OpenAI-compatible server"),
        (BASE.replace("    port: 8000", "    port: eighty"), "port: eighty", "`port` must be a number", None),
        (BASE.replace("sse-text", "gzip"), "gzip", "unknown format 'gzip'", None),
        (BASE + "  input: {text: '${input.prompt}'}\n", "content: \"${input.prompt}\"", "'input.prompt': input has no 'prompt'", "it has: text"),
        (BASE + "  private: true\n", "private: true", "model-compose key 'private' is not supported", None),
        (COMPONENT + "workflow:\n  jobs:\n    - {component: vllm}\n    - {component: vllm}\n", ("- {component: vllm}", 2),
         "job id '__job__' is used twice", "give each job its own `id:`"),
        (COMPONENT + "workflow:\n  job: {type: delay, duration: 1, hook: {}}\n", "job: {", "model-compose key 'hook' is not supported", "component jobs"),
        (COMPONENT + "workflow:\n  job: {component: vllm}\n  component: vllm\n", ("  component: vllm", 1), "belongs in the job", None),
        (COMPONENT + "workflow:\n  component: vllm\n  action: chta\n", "action: chta", "unknown action 'chta'", None),
        (COMPONENT + "workflow:\n  output: ${jobs.other.output}\n", "jobs.other", "unknown job 'other'", None),
        (COMPONENT + "workflows:\n  - {output: '${output}'}\n  - {output: '${output}'}\n", ("  - {output", 2), "workflow id '__workflow__' is used twice",
         None),
        ("controller: {type: http-server}\n", "controller", "needs a `workflow:`", None),
        ("controller:\n  adapter: {type: mcp-server, transport: stdio}\n" + BASE, "transport", "'transport' is not supported", "only `transport: http`"),
        ("controller:\n  adapter: {type: http-server, websocket: true}\n" + BASE, "websocket", "'websocket' is not supported", "only `websocket: false`"),
        ("controller:\n  adapter:\n    type: http-server\n    static: {path: /, base_dir: ui}\n" + BASE, "static:", "'static' is not supported", None),
        ("controller:\n  adapters:\n    - {type: http-server}\n    - {type: mcp-server}\n" + BASE, "- {type: http-server}", "exactly one", None),
        ("controller:\n  port: 9000\n  adapter: {type: http-server, port: 8080}\n" + BASE, "port: 9000", "both on the controller and in its adapter",
         None),
        ("controller:\n  adapter: {type: http-server, prot: 8080}\n" + BASE, "prot", "unknown key 'prot' in controller.adapter", "did you mean 'port'?"),
    ],
)
def test_errors_point_at_the_offending_line(text: str, marker: str | tuple[str, int], message: str, hint: str | None) -> None:
    assert_error_at(text, marker, message, hint)


@pytest.mark.parametrize("adapter", [
    "  adapter:\n    type: http-server\n    host: 127.0.0.1\n    port: 8123\n    base_path: /api\n    websocket: false\n    origins: '*'\n",
    "  adapters:\n    - {type: http-server, host: 127.0.0.1, port: 8123, base_path: /api}\n",
])
def test_the_newer_controller_adapter_form_sets_the_server(adapter: str) -> None:
    """model-compose 0.4.100+ puts the HTTP server under `controller.adapter(s)`."""
    spec = spec_of("controller:\n" + adapter + BASE)
    assert (spec.server.host, spec.server.port, spec.server.base_path) == ("127.0.0.1", 8123, "/api")


def test_errors_are_collected_not_stopped_at_the_first() -> None:
    text = BASE.replace("    port: 8000\n", "    prot: 8000\n    clean: [rm]\n").replace("stream_format", "stream_formt")
    messages = [e.message for e in errors_of(lowering_error(text))]
    for expected in ("unknown key 'prot'", "'clean' is not supported", "unknown key 'stream_formt'", "needs `stream_format"):
        assert sum(expected in m for m in messages) == 1, messages
    assert len(messages) == 4, messages


# -- a lowered flow runs -------------------------------------------------------------------


def test_flowctl_run_streams_from_a_model_compose_flow(tmp_path: Path) -> None:
    port = free_port()
    text = f"""\
workflow:
  input: ${{input}}
  output: ${{output as text;sse-text}}
component:
  type: http-server
  manage:
    install: [{json.dumps(PYTHON)}, -c, "import pathlib; pathlib.Path('installed').write_text('${{HOME}}')"]
    working_dir: .
    start: [{json.dumps(PYTHON)}, {json.dumps(str(FAKE_VLLM))}, --port, "{port}", --served-model-name, m, --quiet]
  port: {port}
  action:
    path: /v1/chat/completions
    body:
      model: m
      messages: [{{role: user, content: "${{input.prompt as text}}"}}]
      stream: true
    stream_format: json
    output: ${{response[].choices[0].delta.content}}
"""
    path = tmp_path / "model-compose.yml"
    path.write_text(text)
    env = {**os.environ, "FLOWCTL_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [FLOWCTL, "run", str(path), "--input", json.dumps({"prompt": "echo: hello model compose"})],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello model compose"
    assert (tmp_path / "installed").read_text() == "${HOME}"  # ran in working_dir, not templated


def test_docstring_examples() -> None:
    import doctest

    from flowctl.engine.frontends import model_compose, model_compose_keys

    for module in (model_compose_keys, model_compose):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
