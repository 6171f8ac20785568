"""model-compose's multi-job workflows: jobs chained by `depends_on` and `${jobs.<id>.output}`,
job inputs substituted into actions, several workflows and components, http-client calls,
and every error at its line. The last tests run such a flow end to end: `flowctl up` starts
the stand-in servers as managed components and the runs go through real HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from support.model_compose import assert_error_at, errors_of, line_of, spec_of
from support.paths import FAKE_VLLM, PYTHON, TESTS_DIR
from support.procs import free_port

from flowctl.engine.flow import load_flow_text
from flowctl.nodes.sse_parser import iter_sse_events

ECHO_HTTP = TESTS_DIR / "servers" / "echo_http.py"


CLIENTS = """\
components:
  - id: writer
    type: http-client
    base_url: https://api.example.com/v1
    headers: {Authorization: "Bearer ${env.KEY}"}
    action:
      path: /chat/completions
      body:
        model: m
        messages: [{role: user, content: "${input.prompt as text}"}]
      output:
        quote: ${response.choices[0].message.content}
  - id: speaker
    type: http-client
    action:
      endpoint: https://tts.example.com/v1/speak/${input.voice}?format=mp3
      body: {text: "${input.text}"}
      output: ${response as base64}
"""

CHAIN = CLIENTS + """\
workflow:
  jobs:
    - id: quote
      component: writer
      input: ${input}
    - id: voice
      component: speaker
      input:
        text: ${jobs.quote.output.quote}
        voice: ${input.voice | alloy @(description Which voice)}
      output:
        quote: ${jobs.quote.output.quote as text}
        audio: ${output as audio/mp3;base64}
      depends_on: [quote]
"""


def test_a_chain_of_jobs_reads_upstream_outputs_directly() -> None:
    spec = spec_of(CHAIN)
    quote, voice = spec.nodes["quote"], spec.nodes["voice"]
    assert quote.type == voice.type == "http-stream"
    assert quote.needs == [] and voice.needs == ["quote"]
    assert quote.headers == {"Authorization": "Bearer ${env.KEY}"}
    # the job's input is substituted into the action: the request reads the upstream node
    assert voice.body == {"text": "${nodes.quote.output.quote}"}
    assert voice.url == 'https://tts.example.com/v1/speak/${input.voice | "alloy" @(description Which voice)}?format=mp3'
    # the job's output shape is folded into the request's own extraction
    assert voice.output == {"quote": "${nodes.quote.output.quote as text}", "audio": "${response as audio/mp3;base64}"}
    flow = load_flow_text(CHAIN)
    workflow = flow.workflows["__default__"]
    assert workflow.output_node == "voice" and workflow.run_nodes == ("quote", "voice")
    props = workflow.input_schema["properties"]
    assert props["voice"] == {"type": "string", "default": "alloy", "description": "Which voice"}
    assert workflow.input_schema["required"] == ["prompt"]


def test_depends_on_or_groups_and_order() -> None:
    text = CLIENTS + """\
workflow:
  jobs:
    - {id: c, component: writer, depends_on: [a, [b, d]]}
    - {id: a, component: writer}
    - {id: b, component: writer}
    - {id: d, component: writer, depends_on: [a]}
  output: ${jobs.c.output}
"""
    spec = spec_of(text)
    assert spec.nodes["c"].needs == ["a", "b", "d"]  # an OR-group waits on whichever of its jobs run
    assert spec.nodes["d"].needs == ["a"]
    assert spec.workflows["__default__"].output == "c"


def test_several_workflows_keep_their_jobs_apart() -> None:
    text = CLIENTS + """\
workflows:
  - id: one
    jobs:
      - {id: ask, component: writer}
  - id: two
    jobs:
      - {id: ask, component: writer, input: {prompt: "${input.topic | cats}"}}
"""
    flow = load_flow_text(text)
    assert flow.workflows["one"].output_node == "ask" and flow.workflows["two"].output_node == "ask-2"
    assert flow.spec.nodes["ask-2"].body["messages"][0]["content"] == '${input.topic as text | "cats"}'
    assert set(flow.workflows["two"].inputs) == {"topic"}


def test_a_streamed_last_job_streams_the_workflow() -> None:
    text = """\
components:
  - id: llm
    type: http-client
    base_url: http://127.0.0.1:9/v1
    actions:
      - id: plan
        path: /plan
        body: {q: "${input.q}"}
        output: ${response.plan}
      - id: chat
        path: /chat/completions
        body: {messages: [{role: user, content: "${input.prompt}"}], stream: true}
        stream_format: json
        output: ${response[].choices[0].delta.content}
workflow:
  jobs:
    - {id: plan, component: llm, action: plan}
    - id: answer
      component: llm
      action: chat
      input: {prompt: "Follow this plan: ${jobs.plan.output}"}
      output: ${output as text;sse-text}
"""
    flow = load_flow_text(text)
    workflow = flow.workflows["__default__"]
    assert workflow.output_node == "answer-output" and workflow.output_type == "stream/text"
    assert flow.spec.nodes["answer"].body["messages"][0]["content"] == "Follow this plan: ${nodes.plan.output}"
    assert flow.spec.nodes["answer"].needs == ["plan"]


@pytest.mark.parametrize(
    ("edit", "marker", "message", "hint"),
    [
        (("depends_on: [quote]", "depends_on: [qoute]"), "depends_on: [qoute]", "unknown job 'qoute'", "did you mean 'quote'?"),
        (("${jobs.quote.output.quote}", "${jobs.qoute.output.quote}"), "jobs.qoute", "unknown job 'qoute'", "did you mean 'quote'?"),
        (("text: ${jobs.quote.output.quote}", "txt: ${jobs.quote.output.quote}"), 'body: {text: "${input.text}"}', "'input.text': input has no 'text'",
         "it has: txt, voice"),
        (("depends_on: [quote]", "depends_on: [quote]\n    - {id: quote, component: writer}"), "- {id: quote, component: writer}",
         "job id 'quote' is used twice", None),
        (("component: speaker", "component: speakr"), "component: speakr", "unknown component 'speakr'", "did you mean 'speaker'?"),
        (("      input: ${input}\n", "      input: ${input}\n      interrupt: {before: true}\n"), "interrupt:", "model-compose key 'interrupt' is not supported", None),
        (("      input: ${input}\n", "      input: ${input}\n      type: pipeline\n"), "type: pipeline", "job type 'pipeline' is not supported", "depends_on"),
    ],
)
def test_errors_point_into_the_file(edit: tuple[str, str], marker: str, message: str, hint: str | None) -> None:
    text = CHAIN.replace(*edit)
    assert text != CHAIN
    assert_error_at(text, marker, message, hint)


def test_a_cycle_of_jobs_is_named() -> None:
    text = CHAIN.replace("      depends_on: [quote]\n", "").replace("      input: ${input}\n", "      input: ${input}\n      depends_on: [voice]\n")
    error = assert_error_at(text, "depends_on: [voice]", "jobs wait on each other in a cycle")
    assert "quote → voice → quote" in error.message


def test_an_unsupported_component_is_named_at_its_type_with_what_to_use() -> None:
    text = CLIENTS + """\
  - id: store
    type: vector-store
    driver: chroma
    action: {method: search}
workflow:
  jobs:
    - {id: ask, component: writer}
    - {id: find, component: store, depends_on: [ask]}
"""
    errors = errors_of(text)
    assert len(errors) == 1, "\n".join(map(str, errors))  # and no "unknown component" echo of it
    assert errors[0].location.line == line_of(text, "type: vector-store")
    assert "component type 'vector-store' is not supported" in errors[0].message
    assert "HTTP API" in (errors[0].hint or "")


def test_several_ends_need_an_output() -> None:
    text = CLIENTS + "workflow:\n  jobs:\n    - {id: a, component: writer}\n    - {id: b, component: writer}\n"
    assert_error_at(text, "workflow:", "has several jobs that nothing depends on (a, b)", "add `output: ${jobs.<id>.output}`")


def test_request_data_never_becomes_shell_code() -> None:
    text = """\
component:
  type: shell
  action:
    command: [sh, -c, "${input.command}"]
workflow:
  output: ${output}
"""
    error = assert_error_at(text, "command:", "would become part of the code `sh -c` runs")
    assert "$1" in (error.hint or "")
    # a value inside the code is passed as a positional parameter (model_compose_shell)
    code = spec_of(text.replace("${input.command}", 'ls -la \\"${input.path}\\"')).nodes["job"].argv
    assert code == ["sh", "-c", 'ls -la "$1"', "sh", "${input.path}"]


# -- end to end: stand-ins started by flowctl, real HTTP ---------------------------------------


def _end_to_end_flow(echo_port: int, llm_port: int) -> str:
    return f"""\
controller:
  type: http-server
  base_path: /api
components:
  - id: echo
    type: http-server
    port: {echo_port}
    start: [{json.dumps(PYTHON)}, {json.dumps(str(ECHO_HTTP))}, --port, "{echo_port}"]
    actions:
      - id: speech
        path: /speech
        body: {{text: "${{input.text}}"}}
  - id: llm
    type: http-server
    port: {llm_port}
    start: [{json.dumps(PYTHON)}, {json.dumps(str(FAKE_VLLM))}, --port, "{llm_port}", --served-model-name, m, --quiet]
    actions:
      - id: complete
        default: true
        path: /v1/chat/completions
        body:
          model: m
          messages: [{{role: user, content: "${{input.prompt as text}}"}}]
        output:
          quote: ${{response.choices[0].message.content}}
      - id: stream
        path: /v1/chat/completions
        body:
          model: m
          messages: [{{role: user, content: "${{input.prompt}}"}}]
          stream: true
        stream_format: json
        output: ${{response[].choices[0].delta.content}}
  - id: api
    type: http-client
    base_url: http://127.0.0.1:${{env.ECHO_PORT}}
    headers: {{Authorization: "Bearer ${{env.API_TOKEN}}"}}
    action:
      path: /echo
      body:
        question: ${{input.q}}
        model: ${{input.model as select/small,large | small @(description Which model answers)}}
workflows:
  - id: quote-voice
    default: true
    jobs:
      - {{id: quote, component: llm, input: {{prompt: "echo: ${{input.topic}} makes everything better"}}}}
      - id: voice
        component: echo
        action: speech
        input: {{text: "${{jobs.quote.output.quote}}"}}
        output:
          quote: ${{jobs.quote.output.quote as text}}
          audio: ${{output as audio/mp3;base64}}
        depends_on: [quote]
  - id: ask
    job:
      component: api
      output: ${{output.echo}}
  - id: relay
    jobs:
      - {{id: first, component: api, input: {{q: "${{input.prompt}}"}}}}
      - id: answer
        component: llm
        action: stream
        input: {{prompt: "echo: ${{jobs.first.output.echo.question}} and more"}}
        output: ${{output as text;sse-text}}
"""


@pytest.fixture
def running(flowctl_up: Any) -> Any:
    echo_port, llm_port = free_port(), free_port()
    return flowctl_up(_end_to_end_flow(echo_port, llm_port), env={"ECHO_PORT": str(echo_port), "API_TOKEN": "t0ken"}, timeout=60.0)


def test_a_chain_runs_end_to_end(running: Any) -> None:
    with running.client(timeout=30.0) as api:
        r = api.post("/workflows/quote-voice/runs", json={"input": {"topic": "tea"}})
        assert r.status_code == 200, r.text
        output = r.json()["output"]
        assert output["quote"] == "tea makes everything better"
        # the binary answer of the second call, as base64 text
        assert base64.b64decode(output["audio"]) == b"ID3tea makes everything better"


def test_an_http_client_call_carries_env_headers_and_select_inputs(running: Any) -> None:
    with running.client(timeout=30.0) as api:
        r = api.post("/workflows/ask/runs", json={"input": {"q": "why?", "model": "large"}})
        assert r.status_code == 200, r.text
        assert r.json()["output"] == {"question": "why?", "model": "large"}
        schema = api.get("/workflows/ask").json()
        model = json.dumps(schema)
        assert '"enum": ["small", "large"]' in model and "Which model answers" in model
        bad = api.post("/workflows/ask/runs", json={"input": {"q": "x", "model": "huge"}})
        assert bad.status_code == 422
        assert "model" in bad.text and "small, large" in bad.text


def test_a_job_feeds_a_streamed_job(running: Any) -> None:
    with httpx.stream("POST", running.api + "/workflows/relay/runs", json={"input": {"prompt": "hello"}}, timeout=30.0) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(iter_sse_events(r.iter_lines()))
    assert [e.event for e in events][-1] == "done" and json.loads(events[-1].data)["status"] == "succeeded"
    assert "".join(e.data for e in events if e.event == "message") == "hello and more"


def test_value_operators_are_named_not_passed_through() -> None:
    text = CHAIN.replace("        audio: ${output as audio/mp3;base64}\n", '        audio: ${output as audio/mp3;base64}\n        list:\n          "*": ${jobs.quote.output}\n')
    assert_error_at(text, '"*":', "model-compose's `*` operator in a value is not supported")
