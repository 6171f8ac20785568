"""model-compose's job `hook:`, lowered onto the native hook node: each hook runs in a child
Python process (its input as JSON on stdin, its result in a file of its own, its prints in
flowctl's log), with a timeout, in a process group stopped with the run.

model-compose's own hook examples (job-flow/hook and job-flow/loop/polling, their state file
moved under the test's folder) run end to end through `flowctl up` over real HTTP; a hook
that raises fails the run naming the hook, the job and the script's place in the file; one
that hangs is stopped at its timeout, with whatever it started."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.model_compose import FLOWCTL, assert_error_at, line_of, run, spec_of
from support.waiting import wait_until

from flowctl.nodes.proc import alive

#: model-compose's examples/job-flow/hook/model-compose.yml, as published
HOOK_EXAMPLE = """\
controller:
  adapter:
    type: http-server
    port: 8080
    base_path: /api
  webui:
    driver: gradio
    port: 8081

workflow:
  title: Shell Command Executor with Hooks
  description: Executes a shell command with inline Python hooks that transform the input and post-process the output.
  job:
    component: shell-executor
    input:
      command: ls -la "${input.path | .}"
    hook:
      before:
        script: |
          def hook(input, *, task_id, job_id, run_id, phase):
              print(f"[{phase}] job={job_id} run={run_id} command={input['command']!r}")
              input["command"] = f"{input['command']} 2>&1"
              return input
      after:
        script: |
          def hook(input, output, *, task_id, job_id, run_id, phase):
              lines = output.splitlines()
              print(f"[{phase}] job={job_id} run={run_id} produced {len(lines)} lines")
              return {
                  "line_count": len(lines),
                  "preview": lines[:5],
              }
  output:
    line_count: ${jobs.__job__.output.line_count as integer}
    preview: ${jobs.__job__.output.preview as json}

component:
  id: shell-executor
  type: shell
  action:
    command: [ "sh", "-c", "${input.command}" ]
    timeout: 10.0
    output: ${result.stdout}
"""

#: model-compose's examples/job-flow/loop/polling/model-compose.yml, as published
POLLING_EXAMPLE = """\
controller:
  adapter:
    type: http-server
    port: 8080
    base_path: /api
  webui:
    driver: gradio
    port: 8081

workflow:
  title: Poll a Long-Running Job with `loop`
  description: |
    Polls a fake long-running job status until it reports "ready". Demonstrates
    the `loop` job type with an `until` predicate, iteration-level logging via
    hooks, and a fixed `${input}` reference so every iteration hits the same
    logical job id.
  jobs:
    - id: reset-counter
      component: reset-counter
      output: ${output}

    - id: wait-ready
      type: loop
      depends_on: [ reset-counter ]
      input: ${input.job_id | job-42}
      do:
        component: status-check
        input:
          job_id: ${input}
        hook:
          after:
            script: |
              def hook(input, output, *, task_id, job_id, run_id, phase):
                  # Runs after each poll; makes the polling loop observable in logs.
                  print(f"[poll] run={run_id} job_id={input['job_id']} -> status={output['status']} attempt={output['attempt']}")
                  return output
      until:
        input: ${output.status}
        operator: eq
        value: ready
      max_iteration_count: 20
      output:
        job_id: ${output.job_id}
        status: ${output.status}
        attempts: ${output.attempt}

components:
  # Truncates a counter file so each workflow run starts from attempt 0.
  - id: reset-counter
    type: shell
    action:
      command: [ "sh", "-c", "rm -f /tmp/model-compose-loop-polling.count && echo reset" ]
      output: ${result.stdout}

  # Increments a counter file and returns "pending" for the first two attempts,
  # then "ready". Simulates an external job that takes a few polls to finish.
  - id: status-check
    type: shell
    action:
      command:
        - sh
        - -c
        - |
          COUNTER_FILE=/tmp/model-compose-loop-polling.count
          n=$(cat "$COUNTER_FILE" 2>/dev/null || echo 0)
          n=$((n + 1))
          echo "$n" > "$COUNTER_FILE"
          if [ "$n" -lt 3 ]; then
            printf '{"job_id":"%s","status":"pending","attempt":%d}' "${input.job_id}" "$n"
          else
            printf '{"job_id":"%s","status":"ready","attempt":%d}' "${input.job_id}" "$n"
          fi
      output: ${result.stdout as json}
"""


def _post(up: Any, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(up.api + "/workflows/runs", json={"input": payload, "output_only": True}, timeout=60)


def _own_log(up: Any) -> str:
    """flowctl's own log, as `flowctl logs flowctl` prints it."""
    result = subprocess.run([FLOWCTL, "logs", "flowctl", str(up.flow_path), "-n", "all"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _listing(folder: Path) -> Path:
    folder.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(name)
    return folder


# -- lowering -----------------------------------------------------------------------------------


def test_a_hooked_job_lowers_to_a_hook_node_around_its_call() -> None:
    node = spec_of(HOOK_EXAMPLE).nodes["job"]
    assert node.type == "hook" and node.job == "__job__"
    # the request value in the shell code is the shell's `${1}`, never code; the hooks see `"${1}"`
    assert node.input == {"command": 'ls -la "$${1}"'}
    assert node.node.type == "command" and node.node.argv == ["sh", "-c", "${hook.input.command}", "sh", '${input.path | "."}']
    before, after = node.before[0], node.after[0]
    assert (before.line, after.line) == (line_of(HOOK_EXAMPLE, "before:") + 2, line_of(HOOK_EXAMPLE, "after:") + 2)
    assert before.at == f"flow.yml:{line_of(HOOK_EXAMPLE, 'before:') + 1}:17" and before.timeout == 30
    body = spec_of(POLLING_EXAMPLE).nodes["wait-ready"].node
    assert body.type == "hook" and body.job == "wait-ready[do]" and body.input == {"job_id": "${loop.input}"}
    assert body.output == "${hook.output as json}" and not body.before and len(body.after) == 1


HOOK_MISTAKES = [
    (HOOK_EXAMPLE.replace("return input\n", "return input)\n"), "return input)", "the hook script does not compile: unmatched ')'"),
    (HOOK_EXAMPLE.replace("def hook(input, *, task_id", "def hooks(input, *, task_id"), "script: |", "defines no function named `hook`"),
    (HOOK_EXAMPLE.replace("      after:\n        script: |", "      after:\n        timeout: soon\n        script: |"), "timeout: soon", "`timeout` must be a duration"),
    (HOOK_EXAMPLE.replace("      after:\n", "      afterwards:\n"), "afterwards:", "unknown key 'afterwards' in hook"),
    (HOOK_EXAMPLE.replace("    hook:\n", "    retry: 2\n    hook:\n"), "retry: 2", "`retry` on a job with `hook:` is not lowered"),
    (HOOK_EXAMPLE.replace('command: ls -la "${input.path | .}"', "command: ${input.path}"), "command: ${input.path}",
     "a value in it would become part of that code: ${input.path} would be (part of) the program the shell runs"),
]


@pytest.mark.parametrize(("flow", "marker", "message"), HOOK_MISTAKES)
def test_hook_mistakes_are_errors_at_their_line(flow: str, marker: str, message: str) -> None:
    assert_error_at(flow, marker, message)


def test_a_hook_on_a_routing_job_is_refused_with_where_hooks_go() -> None:
    flow = "workflow:\n  job: {type: delay, duration: 1, hook: {after: {script: x}}}\n"
    assert_error_at(flow, "job:", "model-compose key 'hook' is not supported", "component jobs")


# -- end to end through `flowctl up` ------------------------------------------------------------


def test_the_hook_example_returns_the_after_hooks_result_and_logs_the_prints(flowctl_up, tmp_path: Path) -> None:
    folder = _listing(tmp_path / "listed")
    up = flowctl_up(HOOK_EXAMPLE)
    r = _post(up, {"path": str(folder)})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["line_count"] == 6  # total, ., .. and the three files
    assert out["preview"][0].startswith("total") and len(out["preview"]) == 5
    assert not any("[before]" in line or "[after]" in line for line in out["preview"]), "prints never reach the output"
    log = _own_log(up)
    before = re.search(r"before hook of job '__job__' \(run (\S+)\): \[before\] job=__job__ run=(\w+) command='ls -la \"\$\{1\}\"'", log)
    after = re.search(r"after hook of job '__job__' \(run (\S+)\): \[after\] job=__job__ run=(\w+) produced 6 lines", log)
    assert before and after, log
    assert before.group(2) == after.group(2), "one run_id for both phases of one job run"


def test_a_request_value_never_becomes_code_on_its_way_through_the_hooks(flowctl_up, tmp_path: Path) -> None:
    up = flowctl_up(HOOK_EXAMPLE)
    planted = tmp_path / "planted"
    r = _post(up, {"path": f'x"; touch {planted}; echo "$(touch {planted})'})
    assert r.status_code >= 400 and "sh exited with code" in r.text  # ls found no such file
    assert not planted.exists()


def test_the_polling_example_logs_each_iteration_from_its_after_hook(flowctl_up, tmp_path: Path) -> None:
    up = flowctl_up(POLLING_EXAMPLE.replace("/tmp/model-compose-loop-polling", str(tmp_path / "polling")))
    r = _post(up, {})
    assert r.status_code == 200, r.text
    assert r.json() == {"job_id": "job-42", "status": "ready", "attempts": 3}
    polls = re.findall(r"after hook of job 'wait-ready\[do\]' \(run \S+\): \[poll\] run=(\w+) job_id=job-42 -> status=(\w+) attempt=(\d)", _own_log(up))
    assert [(status, attempt) for _, status, attempt in polls] == [("pending", "1"), ("pending", "2"), ("ready", "3")]
    assert len({run_id for run_id, _, _ in polls}) == 3, "each iteration is a run of its own"


def test_a_raising_hook_fails_the_run_at_its_place_in_the_file(flowctl_up) -> None:
    flow = HOOK_EXAMPLE.replace('lines = output.splitlines()', 'lines = output["lines"]')
    up = flowctl_up(flow)
    r = _post(up, {"path": "."})
    assert r.status_code >= 400
    text = r.text
    at = f"{up.flow_path}:{line_of(flow, 'after:') + 1}:17"
    assert f"the after hook of job '__job__' ({at}) failed: TypeError: string indices must be integers" in text, text
    assert f"({up.flow_path} line {line_of(flow, 'output[')})" in text, text
    assert "Traceback" not in text
    assert "Traceback (most recent call last)" in _own_log(up), "the traceback is in the log"


def test_a_hook_that_hangs_is_stopped_at_its_timeout_with_what_it_started(flowctl_up, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    flow = HOOK_EXAMPLE.replace("      after:\n        script: |", "      after:\n        timeout: 1\n        script: |").replace(
        "              lines = output.splitlines()\n",
        "              import os, subprocess, time\n"
        "              child = subprocess.Popen(['sleep', '300'])\n"
        f"              open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "              time.sleep(300)\n",
    )
    up = flowctl_up(flow)
    r = _post(up, {"path": "."})
    assert r.status_code >= 400 and "the after hook of job '__job__'" in r.text and "ran longer than 1s and was stopped" in r.text, r.text
    hook_pid, child_pid = map(int, pids.read_text().split())
    wait_until(lambda: not alive(hook_pid) and not alive(child_pid), timeout=10, message="the hook's processes outlived its timeout")
    assert up.alive()


# -- what a hook returns ------------------------------------------------------------------------

RETURNS = """\
workflow:
  job:
    component: echo
    input: {word: "${input.word}"}
    hook:
      after:
        - script: |
            def hook(input, output, **point):
                return {"first": output, "phase": point["phase"]}
        - script: |
            async def hook(input, output, *, task_id, job_id, run_id, phase):
                return RESULT
component:
  id: echo
  type: shell
  action:
    command: [echo, "${input.word}"]
    output: ${result.stdout}
"""


@pytest.mark.parametrize(("result", "expected"), [("[output, input]", [{"first": "hi", "phase": "after"}, {"word": "hi"}]), ("None", None)])
def test_each_after_hook_gets_the_last_ones_output_and_none_is_null(tmp_path: Path, result: str, expected: Any) -> None:
    assert run(tmp_path, RETURNS.replace("RESULT", result), "word=hi") == expected


def test_a_result_json_cannot_carry_fails_naming_its_type(tmp_path: Path) -> None:
    path = tmp_path / "flow.yml"
    path.write_text(RETURNS.replace("RESULT", "{1, 2}"))
    result = subprocess.run([FLOWCTL, "run", str(path), "-i", "word=hi"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "FLOWCTL_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert "the after hook of job '__job__'" in result.stderr and "it returned set, which JSON cannot carry" in result.stderr, result.stderr


# -- request values in shell code ---------------------------------------------------------------

SHELL_JOB = """\
workflow:
  job: {component: run}
component:
  id: run
  type: shell
  action:
    command:
      - sh
      - -c
      - |
        CODE
    output: ${result.stdout}
"""


@pytest.mark.parametrize(("code", "why"), [
    ('"${input.program}" --help', "would be (part of) the program the shell runs"),
    ('eval "${input.word}"', "is an argument of `eval`"),
    ('echo "$(${input.word})"', "would be (part of) the program the shell runs"),
    ("cat <<EOF\n        ${input.word}\n        EOF", "is in a here-document"),
])
def test_a_request_value_that_would_not_be_a_plain_argument_is_refused(code: str, why: str) -> None:
    error = assert_error_at(SHELL_JOB.replace("CODE", code), "- |", why)
    assert "would become part of the code `sh -c` runs" in error.message


def test_a_request_value_reaches_the_shell_as_it_is_in_any_quotes(tmp_path: Path) -> None:
    flow = SHELL_JOB.replace("CODE", 'printf "%s|" "${input.word}" ${input.word} \'${input.word}\'')
    word = """$(touch planted) `touch planted` "; touch planted; echo \""""
    assert run(tmp_path, flow, f"word={word}") == f"{word}|{word}|{word}|"
    assert not (tmp_path / "planted").exists()


def test_a_for_each_do_job_is_hooked_per_item(tmp_path: Path) -> None:
    flow = """\
workflow:
  jobs:
    - id: each
      type: for-each
      input: ${input.words as list}
      do:
        component: echo
        input: {word: "${item}"}
        hook:
          before:
            script: |
              def hook(input, *, task_id, job_id, run_id, phase):
                  return {"word": f"{job_id}:{input['word'].upper()}"}
components:
  - id: echo
    type: shell
    action:
      command: [sh, -c, 'printf "<%s>" "${input.word}"']
      output: ${result.stdout}
"""
    assert run(tmp_path, flow, 'words=["a", "b c"]') == ["<each[do]:A>", "<each[do]:B C>"]
