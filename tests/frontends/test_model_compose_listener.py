"""model-compose's `listener:`: an action that completes by callback, and webhooks that start runs.

Real `flowctl up`, real HTTP: the upstream (`tests/servers/callback_upstream.py`, started by
the flow as its managed component) answers a job at once with its task id and POSTs the
result to the listener later, or before its own answer, or never. The Telegram example runs
with its two hosted APIs stood in by the same server.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.model_compose import assert_error_at, run, spec_of
from support.paths import PYTHON, REPO_ROOT
from support.procs import free_port
from support.waiting import wait_until

UPSTREAM = str(REPO_ROOT / "tests" / "servers" / "callback_upstream.py")

# model-compose's gateway/http-tunnel/ngrok example without its tunnel: the callback URL is
# the listener's own address (a tunnel's public URL in the example)
CALLBACK = """\
controller:
  type: http-server
  port: 8080
  base_path: /api

listener:
  type: http-callback
  port: {listen}
  path: /callback
  identify_by: ${{body.task_id}}
  result: ${{body.result}}
  status: ${{body.status | ok}}
  fail_when: failed

workflow:
  title: Callback example
  input: ${{input}}
  output: ${{output}}

component:
  type: http-server
  start: [ {python}, {upstream}, --port, "{port}" ]
  port: {port}
  action:
    method: POST
    path: /process
    headers:
      Content-Type: application/json
    body:
      data: ${{input.data}}
      callback_url: http://127.0.0.1:{listen}/callback
      task_id: ${{context.run_id}}
      mode: ${{input.mode | after}}
    completion:
      type: callback
      wait_for: ${{context.run_id}}
      timeout: 5s
    output:
      task_id: ${{response.task_id}}
      result: ${{result as json}}
"""

# model-compose's channels/telegram example, its two hosted APIs pointed at the stand-in
TELEGRAM = """\
controller:
  adapter:
    type: http-server
    base_path: /api
    port: 8080

listener:
  type: http-trigger
  port: {listen}
  triggers:
    - path: /webhook
      method: POST
      workflow: handle-message
      input:
        chat_id: ${{body.message.chat.id}}
        text: ${{body.message.text}}
        from: ${{body.message.from.first_name}}

workflows:
  - id: handle-message
    title: Handle Telegram Message
    jobs:
      - id: generate-reply
        component: openai-chat
        input:
          prompt: ${{input.text}}
          from: ${{input.from}}
        output:
          reply: ${{output.message}}

      - id: send-reply
        component: telegram-send-message
        input:
          chat_id: ${{input.chat_id}}
          text: ${{jobs.generate-reply.output.reply}}
        output: ${{output}}
        depends_on:
          - generate-reply

components:
  - id: upstream
    type: http-server
    start: [ {python}, {upstream}, --port, "{port}" ]
    port: {port}
    action:
      method: GET
      path: /sent

  - id: openai-chat
    type: http-client
    base_url: http://127.0.0.1:{port}/v1
    action:
      path: /chat/completions
      method: POST
      headers:
        Authorization: Bearer ${{env.OPENAI_API_KEY}}
        Content-Type: application/json
      body:
        model: gpt-4o
        messages:
          - role: system
            content: >
              You are a helpful Telegram bot assistant.
              The user's name is ${{input.from}}.
              Keep your responses concise and friendly.
          - role: user
            content: ${{input.prompt as text}}
      output:
        message: ${{response.choices[0].message.content}}

  - id: telegram-send-message
    type: http-client
    base_url: http://127.0.0.1:{port}/bot${{env.TELEGRAM_BOT_TOKEN}}
    action:
      path: /sendMessage
      method: POST
      headers:
        Content-Type: application/json
      body:
        chat_id: ${{input.chat_id}}
        text: ${{input.text}}
        parse_mode: Markdown
      output:
        ok: ${{response.ok}}
        message_id: ${{response.result.message_id}}
"""


def _callback_flow(listen: int | None = None, port: int | None = None) -> tuple[str, int]:
    listen = listen or free_port()
    return CALLBACK.format(listen=listen, port=port or free_port(), python=PYTHON, upstream=UPSTREAM), listen


@pytest.fixture
def callbacks(flowctl_up: Any) -> Any:
    text, listen = _callback_flow()
    up = flowctl_up(text, timeout=60.0)
    up.listen = f"http://127.0.0.1:{listen}"
    return up


def _run(up: Any, **inputs: Any) -> httpx.Response:
    with up.client(timeout=30.0) as api:
        return api.post("/workflows/__default__/runs", json={"input": inputs})


def test_the_run_returns_what_the_callback_brought(callbacks: Any) -> None:
    r = _run(callbacks, data="photo-1")
    assert r.status_code == 200, r.text
    body = r.json()
    # `${response.task_id}` from the answer, `${result}` from the callback; the task id the
    # upstream was given is the run's id (`${context.run_id}`)
    assert body["output"] == {"task_id": body["run_id"], "result": {"processed": "photo-1"}}


def test_a_callback_that_comes_before_the_answer_is_not_lost(callbacks: Any) -> None:
    r = _run(callbacks, data="quick", mode="early")
    assert r.status_code == 200, r.text
    assert r.json()["output"]["result"] == {"processed": "quick"}


def test_a_callback_that_never_comes_fails_the_job_naming_the_identity(callbacks: Any) -> None:
    r = _run(callbacks, data="lost", mode="never")
    assert r.status_code >= 500, r.text
    body = r.json()
    assert body["status"] == "failed"
    assert "node 'job'" in body["error"] and f"no callback for identity '{body['run_id']}' came within 5s" in body["error"], body


def test_a_callback_reporting_failure_fails_the_job(callbacks: Any) -> None:
    r = _run(callbacks, data="bad", mode="fail")
    assert r.status_code >= 500, r.text
    assert "reported status 'failed'" in r.json()["error"]


def test_a_callback_nobody_waits_for_is_answered_404(callbacks: Any) -> None:
    r = httpx.post(callbacks.listen + "/callback", json={"task_id": "no-such-task", "result": 1}, timeout=10.0)
    assert r.status_code == 404
    assert "no-such-task" in r.json()["error"]
    # and the listener's other paths and methods say what it has
    assert httpx.get(callbacks.listen + "/callback", timeout=10.0).status_code == 405
    assert httpx.post(callbacks.listen + "/elsewhere", json={}, timeout=10.0).status_code == 404
    # hostile bodies get a 4xx, never a traceback
    deep = httpx.post(callbacks.listen + "/callback", content=b"[" * 100_000, headers={"content-type": "application/json"}, timeout=10.0)
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["error"]
    assert httpx.post(callbacks.listen + "/callback", content=b"x" * 2_000_000, timeout=10.0).status_code == 413
    assert httpx.post(callbacks.listen + "/callback", content=b"plain text", timeout=10.0).status_code == 400


def test_flowctl_run_starts_the_listener_its_workflow_waits_on(tmp_path: Path) -> None:
    text, _ = _callback_flow()
    assert run(tmp_path, text, "data=hello")["result"] == {"processed": "hello"}


def test_a_webhook_starts_the_workflow_with_its_mapped_input(flowctl_up: Any) -> None:
    listen, port = free_port(), free_port()
    text = TELEGRAM.format(listen=listen, port=port, python=PYTHON, upstream=UPSTREAM)
    up = flowctl_up(text, env={"OPENAI_API_KEY": "sk-test", "TELEGRAM_BOT_TOKEN": "123:abc"}, timeout=60.0)
    update = {"update_id": 1, "message": {"message_id": 7, "chat": {"id": 4242}, "from": {"first_name": "Ada"}, "text": "hi bot"}}
    r = httpx.post(f"http://127.0.0.1:{listen}/webhook", json=update, timeout=10.0)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] in ("pending", "processing", "completed") and answer["task_id"] == answer["run_id"]
    with up.client(timeout=10.0) as api:
        task = wait_until(lambda: (t := api.get(f"/tasks/{answer['task_id']}").json())["status"] in ("completed", "failed") and t, timeout=30.0,
                          message="the triggered run to end")
    assert task["status"] == "completed", task
    assert task["output"] == {"ok": True, "message_id": 1}
    sent = httpx.get(f"http://127.0.0.1:{port}/sent", timeout=10.0).json()
    # (the chat id arrives as text: the workflow's `chat_id` input is inferred as text)
    assert sent == [{"token": "123:abc", "chat_id": "4242", "text": "hello Ada: hi bot", "parse_mode": "Markdown"}]
    # a webhook whose input does not fit is told so, and starts nothing
    bad = httpx.post(f"http://127.0.0.1:{listen}/webhook", json={"update_id": 2}, timeout=10.0)
    assert bad.status_code == 422 and "message" in bad.json()["error"]


def test_a_listener_beyond_loopback_needs_insecure(tmp_path: Path) -> None:
    text, _ = _callback_flow()
    path = tmp_path / "model-compose.yml"
    path.write_text(text.replace("  type: http-callback\n", "  type: http-callback\n  host: 0.0.0.0\n"))
    result = subprocess.run([PYTHON, "-m", "flowctl", "up", str(path), "--port", str(free_port()), "--no-reload"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 2, result.stderr
    assert "refusing to run http-callback listener 'listener' on 0.0.0.0" in result.stderr and "--insecure" in result.stderr
    # `flowctl run` starts the listener its workflow waits on: the same rule (it has no --insecure)
    result = subprocess.run([PYTHON, "-m", "flowctl", "run", str(path), "-i", "data=x"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 2 and "refusing to run http-callback listener 'listener' on 0.0.0.0" in result.stderr, result.stderr


def test_the_listeners_are_lowered_to_service_nodes() -> None:
    text, listen = _callback_flow(port=9000)
    spec = spec_of(text)
    listener = spec.nodes["listener"]
    assert (listener.type, listener.host, listener.port) == ("http-callback", "127.0.0.1", listen)
    route = listener.callbacks[0]
    assert (route.path, route.identify_by, route.result) == ("/callback", "${request.body.task_id}", "${request.body.result}")
    job = spec.nodes["job"]
    assert job.completion.listener == "listener" and job.completion.wait_for == "${run.id}" and job.completion.timeout == 5.0
    assert "listener" in job.needs and job.stream_format is None


def test_a_completion_without_a_callback_listener_is_named_at_its_line() -> None:
    text, _ = _callback_flow(port=9000)
    start, end = text.index("listener:"), text.index("workflow:")
    assert_error_at(text[:start] + text[end:], "completion:", "needs a top-level `listener:` of type http-callback")


def test_polling_completion_is_refused_with_what_to_do() -> None:
    text, _ = _callback_flow(port=9000)
    assert_error_at(text.replace("type: callback", "type: polling"), "type: polling", "completion type 'polling' is not supported",
                    hint="`loop` job")


def test_a_trigger_naming_no_workflow_of_the_file_is_named_at_its_line() -> None:
    text = TELEGRAM.format(listen=8091, port=9000, python=PYTHON, upstream=UPSTREAM).replace("workflow: handle-message", "workflow: handle-messages")
    assert_error_at(text, "workflow: handle-messages", "trigger starts workflow 'handle-messages'", hint="did you mean 'handle-message'?")


def test_waiting_for_an_id_from_the_answer_is_refused_with_what_to_send() -> None:
    text, _ = _callback_flow(port=9000)
    assert_error_at(text.replace("wait_for: ${context.run_id}", "wait_for: ${response.task_id}"), "wait_for:", "`wait_for` cannot read `${response...}`",
                    hint="${context.run_id}")


def test_reading_a_result_without_a_completion_is_an_error() -> None:
    text, _ = _callback_flow(port=9000)
    start, end = text.index("    completion:"), text.index("    output:")
    assert_error_at(text[:start] + text[end:], "    output:", "`${result...}` is what a callback brings: this action has no `completion:`")


def test_a_callbacks_list_is_one_route_each_and_a_second_callback_listener_is_refused() -> None:
    text, _ = _callback_flow(port=9000)
    start, end = text.index("listener:"), text.index("workflow:")
    listeners = """\
listeners:
  - id: hooks
    type: http-callback
    port: 8090
    base_path: /cb
    callbacks:
      - {path: /done, identify_by: "${query.id}"}
      - {path: /failed, method: PUT, identify_by: "${headers.x-task}", status: failed, fail_when: [failed]}
"""
    spec = spec_of(text[:start] + listeners + text[end:])
    hooks = spec.nodes["hooks"]
    assert [(r.path, r.method, r.identify_by) for r in hooks.callbacks] == [("/done", "POST", "${request.query.id}"), ("/failed", "PUT", "${request.headers.x-task}")]
    assert hooks.route("/done") == "/cb/done" and spec.nodes["job"].completion.listener == "hooks"
    second = listeners + "  - {type: http-callback, port: 8092, path: /other}\n"
    assert_error_at(text[:start] + second + text[end:], "port: 8092", "one http-callback listener per flow")
