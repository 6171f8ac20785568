"""model-compose's `loop` job, lowered onto the native loop node: `do:` is the body, `while` /
`until` the condition, `${output}` the previous iteration's output in `do:` and the one just
run in the condition. model-compose's own loop examples (job-flow/loop/pagination and
retry-with-combinators, their state files moved under the test's folder) run end to end with
`flowctl run`; a loop over an http-client polls the echo stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.model_compose import assert_error_at, run, spec_of
from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port

ECHO_HTTP = TESTS_DIR / "servers" / "echo_http.py"

#: model-compose's examples/job-flow/loop/pagination (commit 3693785), as published
PAGINATION = """\
workflow:
  jobs:
    - id: reset-collector
      component: reset-collector
      output: ${output}

    - id: paginate
      type: loop
      depends_on: [ reset-collector ]
      input: null
      do:
        component: fetch-page
        input:
          cursor: ${output.next_cursor}
      while:
        input: ${output.next_cursor}
        operator: neq
        value: null
      max_iteration_count: 50

    - id: summarize
      depends_on: [ paginate ]
      component: read-collector
      output:
        total_pages: ${jobs.paginate.output.page_number as integer}
        items: ${output as json}

components:
  - id: reset-collector
    type: shell
    action:
      command:
        - sh
        - -c
        - |
          rm -f /tmp/model-compose-loop-pagination.items.json /tmp/model-compose-loop-pagination.page.count
          echo reset
      output: ${result.stdout}

  - id: fetch-page
    type: shell
    action:
      command:
        - python3
        - -c
        - |
          import json, os
          counter_path = "/tmp/model-compose-loop-pagination.page.count"
          items_path = "/tmp/model-compose-loop-pagination.items.json"
          n = int(open(counter_path).read()) if os.path.exists(counter_path) else 0
          n += 1
          open(counter_path, "w").write(str(n))
          start = (n - 1) * 3 + 1
          page_items = [start, start + 1, start + 2]
          all_items = json.load(open(items_path)) if os.path.exists(items_path) else []
          all_items.extend(page_items)
          json.dump(all_items, open(items_path, "w"))
          print(json.dumps({
              "page_number": n,
              "items": page_items,
              "next_cursor": f"cur-{n}" if n < 3 else None,
          }))
      output: ${result.stdout as json}

  - id: read-collector
    type: shell
    action:
      command: [ "sh", "-c", "cat /tmp/model-compose-loop-pagination.items.json" ]
      output: ${result.stdout as json}
"""

#: model-compose's examples/job-flow/loop/retry-with-combinators (commit 7ec5675)
RETRY = """\
workflow:
  jobs:
    - id: reset-attempts
      component: reset-attempts
      output: ${output}

    - id: retry
      type: loop
      depends_on: [ reset-attempts ]
      input:
        max_attempts: ${input.max_attempts as integer @(description Retry budget)}
      do:
        component: flaky-op
        input:
          attempt: ${output.attempt | 0}
      until:
        any:
          - input: ${output.status}
            operator: eq
            value: success
          - input: ${output.status}
            operator: eq
            value: fatal
          - input: ${output.attempt}
            operator: gte
            value: ${input.max_attempts}
      max_iteration_count: 20
      output:
        outcome: ${output.status}
        attempts: ${output.attempt}
        detail: ${output}

components:
  - id: reset-attempts
    type: shell
    action:
      command: [ "sh", "-c", "rm -f /tmp/model-compose-loop-retry.count && echo reset" ]
      output: ${result.stdout}

  - id: flaky-op
    type: shell
    action:
      command:
        - python3
        - -c
        - |
          import json, os
          counter = "/tmp/model-compose-loop-retry.count"
          n = int(open(counter).read()) if os.path.exists(counter) else 0
          n += 1
          open(counter, "w").write(str(n))
          if n < 3:
              print(json.dumps({"attempt": n, "status": "retry", "message": f"transient failure on attempt {n}"}))
          else:
              print(json.dumps({"attempt": n, "status": "success", "message": "operation completed"}))
      output: ${result.stdout as json}
"""


def private(text: str, folder: Path) -> str:
    """The example with its state files in `folder` (tests run side by side)."""
    return text.replace("/tmp/model-compose-loop", str(folder / "loop"))


def test_a_loop_job_lowers_to_a_loop_node() -> None:
    spec = spec_of(PAGINATION)
    paginate = spec.nodes["paginate"]
    assert paginate.type == "loop" and paginate.max_iterations == 50 and paginate.needs == ["reset-collector"]
    assert paginate.node.type == "command" and paginate.node.stdout == "json"
    assert paginate.while_.model_dump(by_alias=True, exclude_unset=True) == {"value": "${loop.output.next_cursor}", "not_equals": None}
    retry = spec_of(RETRY).nodes["retry"]
    assert retry.input == {"max_attempts": "${input.max_attempts as integer @(description Retry budget)}"}
    assert retry.until.model_dump(by_alias=True, exclude_unset=True) == {"any": [
        {"value": "${loop.output.status}", "equals": "success"},
        {"value": "${loop.output.status}", "equals": "fatal"},
        {"value": "${loop.output.attempt}", "gte": "${loop.input.max_attempts}"},
    ]}


def test_the_pagination_example_walks_every_page(tmp_path: Path) -> None:
    assert run(tmp_path, private(PAGINATION, tmp_path)) == {"total_pages": 3, "items": [1, 2, 3, 4, 5, 6, 7, 8, 9]}


@pytest.mark.parametrize(("budget", "outcome", "attempts"), [("5", "success", 3), ("2", "retry", 2)])
def test_the_retry_example_stops_on_success_or_on_its_budget(tmp_path: Path, budget: str, outcome: str, attempts: int) -> None:
    out = run(tmp_path, private(RETRY, tmp_path), f"max_attempts={budget}")
    assert (out["outcome"], out["attempts"]) == (outcome, attempts)
    assert out["detail"]["attempt"] == attempts


def _polling_flow(port: int) -> str:
    return f"""\
workflow:
  jobs:
    - id: wait-ready
      type: loop
      input: ${{input.job_id}}
      do:
        component: api
        input: {{job_id: "${{input}}"}}
      until: {{input: "${{output.status}}", operator: eq, value: ready}}
      max_iteration_count: 10
      output: {{job_id: "${{output.job_id}}", attempts: "${{output.attempt}}"}}
components:
  - id: api
    type: http-server
    port: {port}
    start: [{json.dumps(PYTHON)}, {json.dumps(str(ECHO_HTTP))}, --port, "{port}"]
    action:
      method: GET
      path: /status
      params: {{job: "${{input.job_id}}", ready_after: 4}}
"""


def test_a_loop_polls_an_http_component_until_it_is_ready(tmp_path: Path) -> None:
    assert run(tmp_path, _polling_flow(free_port()), "job_id=j-1") == {"job_id": "j-1", "attempts": 4}


def test_a_do_job_without_input_reads_the_previous_output_or_the_loop_input(tmp_path: Path) -> None:
    flow = _polling_flow(free_port()).replace('        input: {job_id: "${input}"}\n', "").replace("input: ${input.job_id}", "input: {job_id: '${input.job_id}'}")
    body = spec_of(flow).nodes["wait-ready"].node
    assert body.params == {"job": "${loop.previous.job_id | ${loop.input.job_id}}", "ready_after": 4}
    assert run(tmp_path, flow, "job_id=j-2") == {"job_id": "j-2", "attempts": 4}


LOOP_MISTAKES = [
    (RETRY.replace("      until:\n", "      while: {input: '${output.status}', operator: eq, value: retry}\n      until:\n"),
     "      until:", "a loop needs exactly one of `while:` and `until:`"),
    (RETRY.replace("max_iteration_count: 20", "max_iteration_count: 0"), "max_iteration_count: 0", "`max_iteration_count` must be a whole number"),
    (RETRY.replace("operator: gte", "operator: bigger"), "operator: bigger", "unknown operator 'bigger'"),
    (RETRY.replace("      do:\n", "      do:\n        hook: {after: {script: x}}\n"), "hook:", "the hook script defines no function named `hook`"),
    (RETRY.replace("component: flaky-op\n        input:", "component: flaky-opp\n        input:"), "flaky-opp", "unknown component 'flaky-opp'"),
]


@pytest.mark.parametrize(("flow", "marker", "message"), LOOP_MISTAKES)
def test_loop_errors_point_into_the_file(flow: str, marker: str, message: str) -> None:
    assert_error_at(flow, marker, message)


def test_a_loop_value_inside_shell_code_is_passed_as_an_argument(tmp_path: Path) -> None:
    """model-compose's polling example puts the job id (from the request) into `sh -c` code:
    flowctl passes it to the script as a positional parameter, so it stays text."""
    flow = """\
workflow:
  output: ${jobs.wait-ready.output}
  jobs:
    - id: wait-ready
      type: loop
      input: ${input.job_id | job-42}
      do:
        component: status-check
        input: {job_id: "${input}"}
      until: {input: "${output.status}", operator: eq, value: ready}
      output: ${output.job_id}
components:
  - id: status-check
    type: shell
    action:
      command: [sh, -c, "printf '{\\"status\\":\\"ready\\",\\"job_id\\":\\"%s\\"}' \\"${input.job_id}\\""]
      output: ${result.stdout as json}
"""
    assert run(tmp_path, flow, "job_id=$(touch pwned)") == "$(touch pwned)"
    assert not (tmp_path / "pwned").exists()
