"""Bad flows are reported as FILE:LINE:COL: message, with a hint where one exists."""

from __future__ import annotations

import textwrap

import pytest

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow_text

BASE = """\
nodes:
  server:
    type: process-start
    command: [python3, -m, http.server, "9999"]
    port: 9999
  chat:
    type: http-stream
    needs: [server]
    url: http://127.0.0.1:9999/v1/chat/completions
    body: {prompt: "${input.prompt}"}
    output: ${response[].text}
  reply:
    type: sse-sink
    source: ${nodes.chat.output as stream/text}
"""


def error_of(text: str) -> str:
    with pytest.raises(FlowError) as info:
        load_flow_text(textwrap.dedent(text), "flow.yml")
    return str(info.value)


def test_the_base_flow_compiles() -> None:
    flow = load_flow_text(BASE, "flow.yml")
    assert list(flow.workflows) == ["reply"]
    workflow = flow.workflows["reply"]
    assert workflow.run_nodes == ("chat", "reply")
    assert workflow.services == ("server",)
    assert workflow.output_type == "stream/text"
    assert workflow.inputs["prompt"].required


def test_misspelt_key_points_at_the_key_with_a_suggestion() -> None:
    message = error_of(BASE.replace("    port: 9999", "    prot: 9999"))
    assert message == "flow.yml:5:5: unknown key 'prot' in node 'server' (process-start) (did you mean 'port'?)"


def test_unknown_node_type_suggests_the_close_one() -> None:
    message = error_of(BASE.replace("type: process-start", "type: proces-start"))
    assert message.startswith("flow.yml:3:11: unknown node type 'proces-start'")
    assert "did you mean 'process-start'?" in message


def test_reference_to_an_unknown_node() -> None:
    message = error_of(BASE.replace("${nodes.chat.output", "${nodes.chta.output"))
    assert message.startswith("flow.yml:14:13: unknown node 'chta'")
    assert "did you mean 'chat'?" in message


def test_unknown_need() -> None:
    message = error_of(BASE.replace("needs: [server]", "needs: [sever]"))
    assert message.startswith("flow.yml:8:13: unknown node 'sever'")


def test_cycle_is_named() -> None:
    text = BASE.replace("    needs: [server]\n", "    needs: [server, reply]\n")
    message = error_of(text)
    assert "cycle between nodes:" in message
    assert "chat" in message and "reply" in message


def test_bad_template_points_into_the_value() -> None:
    message = error_of(BASE.replace("${input.prompt}", "${input.prompt as nubmer}"))
    assert message.startswith("flow.yml:10:20: bad template in node 'chat'")
    assert "number" in message


def test_service_cannot_read_run_inputs() -> None:
    message = error_of(BASE.replace('"9999"]', '"${input.port}"]'))
    assert "cannot be used in service node 'server'" in message
    assert message.startswith("flow.yml:4:")


def test_response_outside_http_stream_output() -> None:
    message = error_of(BASE.replace("body: {prompt: \"${input.prompt}\"}", "body: {prompt: \"${response.x}\"}"))
    assert "only defined in an http-stream node's `output:`" in message


def test_a_stream_can_be_read_once() -> None:
    again = "  again:\n    type: http-stream\n    url: http://127.0.0.1:9999/x\n    body: {text: \"${nodes.chat.output}\"}\n"
    text = BASE.replace("    source: ${nodes.chat.output as stream/text}\n", "    needs: [again]\n    source: ${nodes.chat.output as stream/text}\n") + again
    message = error_of(text)
    assert "read by more than one node" in message


def test_yaml_syntax_error_has_a_position() -> None:
    message = error_of("nodes:\n  a: [1, 2\n")
    assert message.startswith("flow.yml:3:1: invalid YAML")


def test_duplicate_keys_are_errors() -> None:
    message = error_of("nodes: {}\nnodes: {}\n")
    assert message.startswith("flow.yml:2:1: invalid YAML: duplicate key")


def test_several_errors_are_all_reported_in_file_order() -> None:
    text = BASE.replace("    port: 9999", "    prot: 9999").replace("    url:", "    ulr:")
    message = error_of(text)
    lines = message.splitlines()
    assert len(lines) >= 2
    assert lines[0].startswith("flow.yml:5:5: unknown key 'prot'")
    assert any(line.startswith("flow.yml:9:5: unknown key 'ulr'") for line in lines)


def test_declared_inputs_must_cover_the_templates() -> None:
    text = BASE + "workflows:\n  chat:\n    output: reply\n    inputs:\n      question: {type: text}\n"
    message = error_of(text)
    assert "input 'prompt' is used but not declared" in message


def test_workflow_output_must_exist() -> None:
    message = error_of(BASE + "workflows:\n  chat:\n    output: replly\n")
    assert message.startswith("flow.yml:17:13: unknown node 'replly'")


def test_workflow_inputs_are_inferred_with_types_and_defaults() -> None:
    text = BASE.replace('{prompt: "${input.prompt}"}', '{prompt: "${input.prompt}", t: "${input.temperature as number | 0.7}", n: "${input.n as integer | 3}"}')
    flow = load_flow_text(text, "flow.yml")
    schema = flow.workflows["reply"].input_schema
    assert schema["required"] == ["prompt"]
    assert schema["properties"]["temperature"]["type"] == "number"
    assert schema["properties"]["temperature"]["default"] == 0.7
    assert schema["properties"]["n"]["type"] == "integer"
