"""model-compose's shell components and its if / switch / random-router / filter / for-each /
delay jobs, lowered onto the DAG engine's command, switch, map and value nodes. Each flow is
checked as lowered, then run for real with `flowctl run` (real processes; http calls go to
the echo stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.model_compose import run, spec_of
from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow_text

ECHO_HTTP = TESTS_DIR / "servers" / "echo_http.py"


GRADES = """\
workflow:
  jobs:
    - id: classify
      type: if
      input: ${input.score as integer @(description Test score)}
      conditions:
        - {operator: gte, value: 90, if_true: grade-a}
        - {operator: lt, value: 50, if_true: grade-f, if_false: grade-b}
    - {id: grade-a, component: grade, input: {grade: A, score: "${input.score}"}}
    - {id: grade-b, component: grade, input: {grade: B, score: "${input.score}"}}
    - {id: grade-f, component: grade, input: {grade: F, score: "${input.score}"}}
components:
  - id: grade
    type: shell
    action:
      command: [echo, "grade ${input.grade} for ${input.score}"]
      output:
        grade: ${input.grade}
        rendered: ${result.stdout}
"""


def test_if_lowers_to_a_switch_over_its_conditions() -> None:
    spec = spec_of(GRADES)
    switch = spec.nodes["classify"]
    assert switch.type == "switch" and switch.value == "${input.score as integer @(description Test score)}"
    cases = [case.model_dump(by_alias=True, exclude_unset=True) for case in switch.cases]
    assert cases == [
        {"gte": 90, "to": ["grade-a"], "name": "condition 1"},
        {"lt": 50, "to": ["grade-f"], "name": "condition 2"},
        {"not": {"lt": 50}, "to": ["grade-b"], "name": "not condition 2"},
    ]
    assert spec.nodes["grade-a"].type == "command" and spec.nodes["grade-a"].argv == ["echo", "grade A for ${input.score}"]
    assert spec.nodes["grade-a"].needs == ["classify"]  # decided by the switch
    flow = load_flow_text(GRADES)
    assert flow.workflows["__default__"].input_schema["properties"]["score"] == {"type": "integer", "description": "Test score"}


@pytest.mark.parametrize(("score", "grade"), [("95", "A"), ("70", "B"), ("30", "F")])
def test_if_routes_to_one_branch_and_its_result_is_the_output(tmp_path: Path, score: str, grade: str) -> None:
    assert run(tmp_path, GRADES, f"score={score}") == {"grade": grade, "rendered": f"grade {grade} for {score}"}


SWITCH_AND_RANDOM = """\
workflows:
  - id: greet
    jobs:
      - id: pick
        type: switch
        input: ${input.lang}
        cases:
          - {value: ko, then: ko}
          - {value: en, then: en}
        otherwise: other
      - {id: ko, component: say, input: {text: "annyeong ${input.name}"}}
      - {id: en, component: say, input: {text: "hello ${input.name}"}}
      - {id: other, component: say, input: {text: "hi ${input.name}"}}
  - id: pick-one
    jobs:
      - id: draw
        type: random-router
        mode: weighted
        routings:
          - {to: never, weight: 0}
          - {to: always, weight: 3}
      - {id: never, component: say, input: {text: never}}
      - {id: always, component: say, input: {text: always}}
components:
  - id: say
    type: shell
    action:
      command: [echo, "${input.text}"]
      output: ${result.stdout}
"""


def test_switch_and_random_router_lower_to_switches() -> None:
    spec = spec_of(SWITCH_AND_RANDOM)
    pick = spec.nodes["pick"]
    assert [case.model_dump(by_alias=True, exclude_unset=True) for case in pick.cases] == [
        {"equals": "ko", "to": ["ko"], "name": "ko"}, {"equals": "en", "to": ["en"], "name": "en"}]
    assert pick.default.to == ["other"]
    draw = spec.nodes["draw"]
    assert draw.mode == "random" and [(c.to, c.weight) for c in draw.cases] == [(["never"], 0.0), (["always"], 3.0)]


def test_switch_and_random_router_run(tmp_path: Path) -> None:
    assert run(tmp_path, SWITCH_AND_RANDOM, "lang=en", "name=Ann", workflow="greet") == "hello Ann"
    assert run(tmp_path, SWITCH_AND_RANDOM, "lang=fr", "name=Ann", workflow="greet") == "hi Ann"
    assert run(tmp_path, SWITCH_AND_RANDOM, workflow="pick-one") == "always"  # weight 0 is never drawn


def _lists_flow(port: int) -> str:
    return f"""\
workflow:
  jobs:
    - {{id: fetch, component: api, action: items, input: {{n: "${{input.n as integer | 5}}"}}}}
    - id: keep
      type: filter
      input: ${{jobs.fetch.output}}
      where:
        any:
          - {{input: "${{item.score}}", operator: gte, value: 30}}
          - {{input: "${{item.id}}", operator: eq, value: 0}}
      depends_on: [fetch]
    - id: each
      type: for-each
      input: ${{jobs.keep.output}}
      batch_size: 2
      do:
        component: api
        action: echo
        input: {{id: "${{item.id}}", doubled: "${{item.score}}"}}
      output: ${{output}}
    - {{id: pause, type: delay, duration: 50ms, depends_on: [each]}}
  output:
    kept: ${{jobs.keep.output}}
    echoed: ${{jobs.each.output}}
components:
  - id: api
    type: http-server
    port: {port}
    start: [{json.dumps(PYTHON)}, {json.dumps(str(ECHO_HTTP))}, --port, "{port}"]
    actions:
      - id: items
        method: GET
        path: /items
        params: {{n: "${{input.n}}"}}
        output: ${{response.items}}
      - id: echo
        path: /echo
        body: {{id: "${{input.id}}", score: "${{input.doubled}}"}}
        output: ${{response.echo}}
"""


def test_filter_for_each_and_delay_lower_to_maps_and_a_value() -> None:
    spec = spec_of(_lists_flow(9))
    keep, each, pause = spec.nodes["keep"], spec.nodes["each"], spec.nodes["pause"]
    assert keep.type == "map" and keep.node is None and keep.items == "${nodes.fetch.output}"
    assert keep.where.model_dump(by_alias=True, exclude_unset=True) == {
        "any": [{"value": "${item.score}", "gte": 30}, {"value": "${item.id}", "equals": 0}]}
    assert each.type == "map" and each.concurrency == 2 and each.node.type == "http-stream"
    assert each.node.body == {"id": "${item.id}", "score": "${item.score}"}
    assert pause.type == "value" and pause.delay == 0.05 and pause.needs == ["each"]


def test_filter_for_each_and_delay_run(tmp_path: Path) -> None:
    out = run(tmp_path, _lists_flow(free_port()), "n=5")
    assert out["kept"] == [{"id": 0, "score": 0}, {"id": 3, "score": 30}, {"id": 4, "score": 40}]
    assert out["echoed"] == [{"id": 0, "score": 0}, {"id": 3, "score": 30}, {"id": 4, "score": 40}]


SHELL = """\
workflow:
  jobs:
    - id: count
      component: tools
      action: count
      input: {text: "${input.text}"}
    - id: parse
      component: tools
      action: json
      input: {words: "${jobs.count.output}"}
  output:
    words: ${jobs.count.output as integer}
    parsed: ${jobs.parse.output.n}
    exit: ${jobs.parse.output.code}
components:
  - id: tools
    type: shell
    env: {LANG: C}
    actions:
      - id: count
        command: [wc, -w]
        stdin: ${input.text}
        timeout: 10s
        output: ${result.stdout}
      - id: json
        command: [sh, -c, 'printf "{\\"n\\": %s}" "$1"', sh, "${input.words}"]
        output:
          n: ${result.stdout as json}
          code: ${result.exit_code}
"""


def test_shell_actions_lower_to_commands_with_stdin_env_and_timeout() -> None:
    spec = spec_of(SHELL)
    count, parse = spec.nodes["count"], spec.nodes["parse"]
    assert (count.type, count.argv, count.stdin, count.timeout, count.env) == ("command", ["wc", "-w"], "${input.text}", 10.0, {"LANG": "C"})
    # request data reaches `sh -c` only as an argument ($1), never inside the script
    assert parse.argv == ["sh", "-c", 'printf "{\\"n\\": %s}" "$1"', "sh", "${nodes.count.output}"]


def test_shell_jobs_run_and_a_value_with_shell_syntax_stays_data(tmp_path: Path) -> None:
    out = run(tmp_path, SHELL, "text=one two three $(touch pwned)")
    assert out == {"words": 5, "parsed": {"n": 5}, "exit": 0}
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("flow", "marker", "message"),
    [
        (GRADES.replace("operator: gte", "operator: greater"), "operator: greater", "unknown operator 'greater'"),
        (GRADES.replace("if_true: grade-a", "if_true: grade-z"), "if_true: grade-z", "unknown job 'grade-z'"),
        (SWITCH_AND_RANDOM.replace("mode: weighted", "mode: sticky"), "mode: sticky", "unknown mode 'sticky'"),
        (SHELL.replace("timeout: 10s", "timeout: soon"), "timeout: soon", "`timeout` must be a duration"),
        (SHELL.replace("${result.exit_code}", "${result.stderr}"), "result.stderr", "'result.stderr': result has no 'stderr'"),
    ],
)
def test_routing_and_shell_errors_point_into_the_file(flow: str, marker: str, message: str) -> None:
    with pytest.raises(FlowError) as caught:
        load_flow_text(flow, "flow.yml")
    errors = list(getattr(caught.value, "errors", [caught.value]))
    found = [e for e in errors if message in e.message]
    assert found, "\n".join(map(str, errors))
    line = next(n for n, text in enumerate(flow.splitlines(), 1) if marker in text)
    assert found[0].location is not None and found[0].location.line == line, str(found[0])


def test_retry_and_on_error_become_request_retries_and_a_fallback(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: every attempt fails to connect
    flow = f"""\
workflow:
  jobs:
    - id: ask
      component: api
      retry: {{max_attempt_count: 2, delay: 10ms, backoff: exponential}}
      on_error:
        output: {{failed: true, why: "${{error.message}}"}}
component:
  id: api
  type: http-client
  action:
    endpoint: http://127.0.0.1:{port}/ask
    body: {{q: "${{input.q | x}}"}}
"""
    spec = spec_of(flow)
    ask = spec.nodes["ask"]
    assert ask.retry.max_attempts == 2 and ask.retry.initial_interval == 0.01 and ask.retry.backoff_factor == 2.0
    assert ask.fallback == "ask-fallback"
    assert spec.nodes["ask-fallback"].value == {"failed": True, "why": "${nodes.ask.error.message}"}
    out = run(tmp_path, flow)
    assert out["failed"] is True and "cannot connect" in out["why"]
