"""model-compose's job `interrupt:` through a real `flowctl up`: the run pauses before and
after the job for a person's answer, reported on model-compose's task route and on
flowctl's run route, and goes on when answered (docs/model-compose.md, "Interrupts").

The corpus example (`interrupt/model-compose.yml`) runs unchanged. It puts the request's
path into `sh -c` code: flowctl passes it as an argument, and the before-pause (whose answer
would replace that code) takes no answer. The tests of answers use the example with that
action written as an argv (`ls -la PATH`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.model_compose import FLOWCTL, assert_error_at, spec_of
from support.paths import REPO_ROOT
from support.waiting import wait_until

CORPUS = Path("/work/scratch/mc-examples/interrupt/model-compose.yml")

#: the corpus example as model-compose's repository has it (examples/interrupt), kept here so
#: the tests do not depend on the corpus folder
EXAMPLE = """\
controller:
  adapter:
    type: http-server
    port: 8080
    base_path: /api
  webui:
    driver: gradio
    port: 8081

workflow:
  title: Shell Command Executor with Human Review
  description: Executes a shell command after pausing for human approval using an interrupt point.
  jobs:
    - id: run-command
      component: shell-executor
      input:
        command: ls -la "${input.path | .}"
      interrupt:
        before:
          message: "About to execute: ${input.command}"
          metadata:
            command: ${input.command}
        after:
          message: "Command finished. Review the output."
          metadata:
            result: ${output}
      output:
        result: ${output as text}

component:
  id: shell-executor
  type: shell
  action:
    command: [ "sh", "-c", "${input.command}" ]
    timeout: 10.0
    output: ${result.stdout}
"""

#: the one change: the path is an argument, not part of shell code
RUNNABLE = EXAMPLE.replace(
    '        command: ls -la "${input.path | .}"\n',
    '        command: ls -la "${input.path | .}"\n        path: ${input.path | .}\n',
).replace('    command: [ "sh", "-c", "${input.command}" ]', '    command: [ "ls", "-la", "${input.path}" ]')


def _task(client: httpx.Client, task_id: str) -> dict[str, Any]:
    response = client.get(f"/tasks/{task_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _paused_at(client: httpx.Client, task_id: str, phase: str) -> dict[str, Any]:
    def paused() -> dict[str, Any] | None:
        task = _task(client, task_id)
        assert task["status"] not in ("failed", "completed"), task
        return task if task["status"] == "interrupted" and task["interrupt"]["phase"] == phase else None

    return wait_until(paused, timeout=30, message=f"task never paused {phase} its job")


def _ended(client: httpx.Client, task_id: str) -> dict[str, Any]:
    return wait_until(lambda: (t := _task(client, task_id))["status"] in ("completed", "failed") and t, timeout=30, message="task never ended")


def test_the_corpus_file_runs_and_its_shell_code_takes_no_answer(flowctl_up: Any, tmp_path: Path) -> None:
    if CORPUS.exists():
        assert CORPUS.read_text() == EXAMPLE
    hostile = tmp_path / 'dir "with" $(touch pwned) quotes'
    hostile.mkdir()
    (hostile / "marker-file.txt").write_text("x")
    up = flowctl_up(EXAMPLE, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        task = client.post("/workflows/runs", json={"input": {"path": str(hostile)}}).json()
        assert task["status"] == "interrupted" and task["interrupt"]["phase"] == "before", task
        task_id = task["task_id"]
        refused = client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command", "answer": {"command": "touch pwned"}})
        assert refused.status_code == 409, refused.text
        assert "takes no answer" in refused.json()["error"] and "sh -c" in refused.json()["error"], refused.text
        assert client.get(f"/runs/{task_id}").json()["pause"]["takes_answer"] is False
        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"}).status_code == 200
        after = _paused_at(client, task_id, "after")
        assert "marker-file.txt" in after["interrupt"]["metadata"]["result"]
        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"}).status_code == 200
        assert _ended(client, task_id)["status"] == "completed"
    assert not (tmp_path / "pwned").exists() and not (REPO_ROOT / "pwned").exists()  # flowctl's (and the command's) cwd


def test_the_interrupts_are_pause_nodes_around_the_job() -> None:
    nodes = spec_of(RUNNABLE).nodes
    before, after, job = nodes["run-command-before"], nodes["run-command-after"], nodes["run-command"]
    assert (before.type, before.phase, before.job) == ("pause", "before", "run-command")
    assert job.needs == ["run-command-before"] and job.argv[2] == "${nodes.run-command-before.output.path}"
    assert after.value == "${nodes.run-command.output}" and after.metadata == {"result": "${nodes.run-command.output}"}


def test_the_example_pauses_before_and_after_and_ends_when_answered(flowctl_up: Any, tmp_path: Path) -> None:
    (tmp_path / "listed").mkdir()
    (tmp_path / "listed" / "marker-file.txt").write_text("x")
    up = flowctl_up(RUNNABLE, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        # model-compose answers `wait_for_completion` as soon as the run pauses
        started = client.post("/workflows/runs", json={"input": {"path": str(tmp_path / "listed")}})
        assert started.status_code == 200, started.text
        task = started.json()
        assert task["status"] == "interrupted", task
        assert task["interrupt"] == {
            "job_id": "run-command", "phase": "before",
            "message": f'About to execute: ls -la "{tmp_path / "listed"}"',
            "metadata": {"command": f'ls -la "{tmp_path / "listed"}"'},
        }  # fmt: skip
        task_id = task["task_id"]

        # flowctl's own run route reports the same pause
        run = client.get(f"/runs/{task_id}").json()
        assert run["status"] == "paused" and run["pause"]["node"] == "run-command-before", run
        assert run["pause"]["message"] == task["interrupt"]["message"] and run["pause"]["expires_at"] > run["pause"]["since"]

        resumed = client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "processing"

        after = _paused_at(client, task_id, "after")
        assert after["interrupt"]["message"] == "Command finished. Review the output."
        assert "marker-file.txt" in after["interrupt"]["metadata"]["result"]

        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"}).status_code == 200
        done = _ended(client, task_id)
        assert done["status"] == "completed", done
        assert "marker-file.txt" in done["output"]["result"]
        assert client.get(f"/runs/{task_id}").json()["status"] == "succeeded"


def test_an_answer_replaces_the_input_before_and_the_result_after(flowctl_up: Any, tmp_path: Path) -> None:
    (tmp_path / "asked").mkdir()
    (tmp_path / "approved").mkdir()
    (tmp_path / "approved" / "only-here.txt").write_text("x")
    up = flowctl_up(RUNNABLE, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        task_id = client.post("/workflows/runs", json={"input": {"path": str(tmp_path / "asked")}}).json()["task_id"]
        answer = {"command": "reviewed", "path": str(tmp_path / "approved")}
        assert client.post(f"/runs/{task_id}/resume", json={"answer": answer}).status_code == 200  # the native route
        after = _paused_at(client, task_id, "after")
        assert "only-here.txt" in after["interrupt"]["metadata"]["result"]  # the command ran on the reviewer's path
        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command", "answer": "edited by the reviewer"}).status_code == 200
        assert _ended(client, task_id)["output"] == {"result": "edited by the reviewer"}


def test_a_pause_nobody_answers_fails_the_run_naming_the_job_and_the_interrupt(flowctl_up: Any, tmp_path: Path) -> None:
    flow = RUNNABLE.replace('            command: ${input.command}\n', '            command: ${input.command}\n          timeout: 1s\n')
    up = flowctl_up(flow, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        task_id = client.post("/workflows/runs", json={"input": {"path": str(tmp_path)}}).json()["task_id"]
        failed = _ended(client, task_id)
        assert failed["status"] == "failed"
        assert "node 'run-command-before': the interrupt before job 'run-command' got no answer within 1s" in failed["error"], failed
        assert client.get(f"/runs/{task_id}").json()["status"] == "failed"


def test_a_resume_for_an_unknown_or_unpaused_run_is_a_4xx_saying_why(flowctl_up: Any, tmp_path: Path) -> None:
    up = flowctl_up(RUNNABLE, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        unknown = client.post("/tasks/no-such-task/resume", json={"job_id": "run-command"})
        assert unknown.status_code == 404 and "no run 'no-such-task'" in unknown.json()["error"], unknown.text
        assert client.post("/runs/no-such-run/resume", json={}).status_code == 404

        task_id = client.post("/workflows/runs", json={"input": {"path": str(tmp_path)}}).json()["task_id"]
        wrong_job = client.post(f"/tasks/{task_id}/resume", json={"job_id": "other-job"})
        assert wrong_job.status_code == 409, wrong_job.text
        assert "not paused at job 'other-job'; it waits at job 'run-command'" in wrong_job.json()["error"]
        no_job = client.post(f"/tasks/{task_id}/resume", json={})
        assert no_job.status_code == 422 and no_job.json()["field"] == "job_id", no_job.text
        wrong_node = client.post(f"/runs/{task_id}/resume", json={"node": "run-command"})
        assert wrong_node.status_code == 409 and "it waits at node 'run-command-before'" in wrong_node.json()["error"]

        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"}).status_code == 200
        _paused_at(client, task_id, "after")
        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"}).status_code == 200
        _ended(client, task_id)
        finished = client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"})
        assert finished.status_code == 409 and f"run '{task_id}' is not paused: it succeeded" in finished.json()["error"], finished.text


def test_cancelling_a_paused_run_ends_it_at_once(flowctl_up: Any, tmp_path: Path) -> None:
    up = flowctl_up(RUNNABLE, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        task_id = client.post("/workflows/runs", json={"input": {"path": str(tmp_path)}}).json()["task_id"]
        cancelled = client.post(f"/runs/{task_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        assert "pause" not in cancelled.json()
        assert _task(client, task_id)["status"] == "failed"
        assert client.post(f"/tasks/{task_id}/resume", json={"job_id": "run-command"}).status_code == 409
    assert up.stop() == 0


@pytest.mark.parametrize(
    ("interrupt", "marker", "message"),
    [
        ("      interrupt: {before: {condition: {operator: eq, input: '${input.path}', value: x}}}\n", "condition", "model-compose key 'condition' is not supported"),
        ("      interrupt: {before: {timeout: soon}}\n", "timeout", "`timeout` must be a duration"),
        ("      interrupt: {during: true}\n", "during", "unknown key 'during' in interrupt"),
    ],
)
def test_interrupt_mistakes_are_errors_at_their_line(interrupt: str, marker: str, message: str) -> None:
    text = RUNNABLE.replace(RUNNABLE[RUNNABLE.index("      interrupt:\n"):RUNNABLE.index("      output:\n")], interrupt)
    assert_error_at(text, marker, message)


def test_stopping_flowctl_while_a_run_is_paused_ends_it_and_exits(flowctl_up: Any, tmp_path: Path) -> None:
    flow = RUNNABLE.replace("    base_path: /api\n", "    base_path: /api\n  shutdown_timeout: 1s\n")
    up = flowctl_up(flow, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        task = client.post("/workflows/runs", json={"input": {"path": str(tmp_path)}}).json()
        assert task["status"] == "interrupted", task
    assert up.stop() == 0  # the pause got the drain (1s), then was interrupted: no hang
    assert "SIGTERM: stopping (runs in flight get 1s)" in up.log_text() and "stopped" in up.log_text()


def test_flowctl_run_cannot_take_an_answer_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "model-compose.yml"
    path.write_text(RUNNABLE)
    result = subprocess.run([FLOWCTL, "run", str(path), "-i", f"path={tmp_path}"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "FLOWCTL_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert "the interrupt before job 'run-command' needs someone to answer, and `flowctl run` cannot take an answer" in result.stderr, result.stderr


NATIVE = """\
version: 1
nodes:
  draft:
    type: value
    value: "a draft about ${input.topic}"
  review:
    type: pause
    message: "Publish the draft about ${input.topic}?"
    metadata: {draft: "${nodes.draft.output}"}
    value: ${nodes.draft.output}
    timeout: 30
  publish:
    type: value
    value: "published: ${nodes.review.output}"
workflows:
  publish: {output: publish}
"""


def test_a_native_pause_node_is_reported_and_answered_on_the_run_routes(flowctl_up: Any) -> None:
    up = flowctl_up(NATIVE, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        started = client.post("/workflows/runs", json={"workflow_id": "publish", "input": {"topic": "owls"}, "wait_for_completion": False})
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        run = wait_until(lambda: (r := client.get(f"/runs/{run_id}").json())["status"] == "paused" and r, timeout=30, message="never paused")
        assert run["pause"]["node"] == "review" and run["pause"]["job_id"] is None
        assert run["pause"]["message"] == "Publish the draft about owls?" and run["pause"]["metadata"] == {"draft": "a draft about owls"}
        resumed = client.post(f"/runs/{run_id}/resume", json={"answer": "a better draft"})
        assert resumed.status_code == 200 and resumed.json()["resumed"]["node"] == "review", resumed.text
        done = wait_until(lambda: (r := client.get(f"/runs/{run_id}").json())["status"] == "succeeded" and r, timeout=30, message="never ended")
        assert done["output"] == "published: a better draft"


STREAMED = NATIVE.replace("workflows:\n  publish: {output: publish}\n", """\
  reply:
    type: sse-sink
    source: "${nodes.publish.output as stream/text}"
workflows:
  publish: {output: reply}
""")


def _sse_events(lines: Any) -> Any:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            event[key] = value.strip()


def test_a_streamed_run_says_it_paused_in_its_node_events_and_goes_on_when_answered(flowctl_up: Any) -> None:
    up = flowctl_up(STREAMED, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        with client.stream("POST", "/workflows/publish/runs?events=nodes", json={"input": {"topic": "owls"}}) as stream:
            run_id = stream.headers["x-run-id"]
            events = _sse_events(stream.iter_lines())
            paused = next(json.loads(e["data"]) for e in events if e.get("event") == "node" and '"paused"' in e["data"])
            assert paused["node"] == "review" and paused["message"] == "Publish the draft about owls?" and paused["metadata"] == {"draft": "a draft about owls"}
            assert client.post(f"/runs/{run_id}/resume", json={}).status_code == 200
            text = "".join(e["data"] for e in events if "event" not in e and "data" in e)
            assert text == "published: a draft about owls"


def test_a_client_leaving_a_paused_streamed_run_cancels_it(flowctl_up: Any) -> None:
    up = flowctl_up(STREAMED, timeout=60.0)
    with httpx.Client(base_url=up.api, timeout=30) as client:
        with client.stream("POST", "/workflows/publish/runs?events=nodes", json={"input": {"topic": "owls"}}) as stream:
            run_id = stream.headers["x-run-id"]
            next(e for e in _sse_events(stream.iter_lines()) if '"paused"' in e.get("data", ""))
        wait_until(lambda: client.get(f"/runs/{run_id}").json()["status"] == "cancelled", timeout=30, message="the run outlived its client")
        assert "pause" not in client.get(f"/runs/{run_id}").json()
