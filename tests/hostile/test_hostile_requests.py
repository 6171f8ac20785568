"""Hostile requests get a 4xx with a message and one log line, never a 500 or a traceback
(issue 15, points 4, 5 and 6, and the long id of point 8), against a real `flowctl up`.

One server for the module: a fake vLLM service, its `chat`/`complete` workflows, and `urlw`,
whose URL and header are built from inputs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from support.console import messages
from support.flowctl_up import UpFactory, UpHandle, fake_flow_yaml
from support.procs import free_port
from support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

URL_WORKFLOW = """\
  urlchat:
    type: http-stream
    needs: [llm]
    url: "http://127.0.0.1:{port}/v1/${{input.path}}"
    headers: {{content-type: application/json, x-user: "${{input.user | anon}}"}}
    body: {{model: qwen2-7b-instruct, messages: [{{role: user, content: hi}}], stream: true}}
    output: ${{response[].choices[0].delta.content}}
  urlreply: {{type: sse-sink, source: "${{nodes.urlchat.output as stream/text}}"}}
  portchat:
    type: http-stream
    needs: [llm]
    url: "http://127.0.0.1:${{input.port}}/v1/chat/completions"
    body: {{model: qwen2-7b-instruct, messages: [{{role: user, content: hi}}], stream: true}}
    output: ${{response[].choices[0].delta.content}}
  portreply: {{type: sse-sink, source: "${{nodes.portchat.output as stream/text}}"}}
workflows:
  urlw: {{output: urlreply}}
  portw: {{output: portreply}}
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpHandle]:
    port = free_port()
    flow = fake_flow_yaml(port, tokens=5, server={"allowed_hosts": ["flows.example.test", ".lan.test"]})
    flow = flow.replace("workflows:\n", URL_WORKFLOW.format(port=port), 1)
    factory = UpFactory(tmp_path_factory.mktemp("up"))
    try:
        yield factory(flow)
    finally:
        factory.close()


def post(up: UpHandle, path: str, raw: bytes, *, content_type: str | None = "application/json", root: bool = False, **headers: str) -> httpx.Response:
    if content_type is not None:
        headers["content-type"] = content_type
    headers.setdefault("accept", "application/json")
    return httpx.post((up.root if root else up.api) + path, content=raw, headers=headers, timeout=30)


def refused_lines(up: UpHandle) -> list[str]:
    return [line for line in messages(up.log_text()) if line.startswith("refused ")]


def assert_no_traceback(up: UpHandle) -> None:
    assert "Traceback" not in up.log_text() and "internal error" not in up.log_text(), up.log_tail()


#: JSON values that parse into something Python cannot use, or not at all
HOSTILE_VALUES = {
    "deep": (b"[" * 5000 + b"]" * 5000, "levels deep"),
    "long-int": (b"7" * 5000, "integer"),
    "surrogate": (b'"\\ud800"', "surrogate"),
}


@pytest.mark.parametrize("kind", list(HOSTILE_VALUES))
def test_hostile_json_bodies_are_400s_with_one_log_line(up: UpHandle, kind: str) -> None:
    value, words = HOSTILE_VALUES[kind]
    before = len(refused_lines(up))
    for route in ("/workflows/chat/runs", "/workflows/complete/runs", "/workflows/runs"):
        response = post(up, route, b'{"input": {"prompt": ' + value + b"}}")
        assert response.status_code == 400, (route, response.text)
        assert words in response.json()["error"]
    response = post(up, "/v1/chat/completions", b'{"model": "chat", "messages": [{"role": "user", "content": ' + value + b"}]}", root=True)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]["message"]
    wait_until(lambda: len(refused_lines(up)) >= before + 4, timeout=5, message=lambda: up.log_tail())
    assert_no_traceback(up)


def test_a_lone_surrogate_names_where_it_is(up: UpHandle) -> None:
    response = post(up, "/workflows/chat/runs", b'{"input": {"prompt": "\\ud800"}}')
    assert response.json()["field"] == "input.prompt"
    response = post(up, "/v1/chat/completions", b'{"model": "chat", "messages": [{"role": "user", "content": "\\udfff"}]}', root=True)
    assert response.json()["error"]["param"] == "messages[0].content"


@pytest.mark.parametrize(
    ("workflow", "inputs", "field", "words"),
    [
        ("urlw", {"path": "chat/completions", "user": "é"}, "user", "header 'x-user'"),
        ("urlw", {"path": "chat/completions", "user": "a\r\nx-injected: 1"}, "user", "header 'x-user'"),
        ("portw", {"port": "99999"}, "port", "out of range"),
        ("portw", {"port": "1@127.0.0.1:2"}, "port", "invalid url"),
    ],
    ids=["non-ascii-header", "crlf-header", "port-out-of-range", "at-sign-in-port"],
)
def test_a_request_a_template_made_invalid_is_a_422_naming_the_input(up: UpHandle, workflow: str, inputs: dict, field: str, words: str) -> None:
    response = post(up, f"/workflows/{workflow}/runs", json.dumps({"input": inputs}).encode())
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and words in body["error"], body
    # streamed, the same failure ends the stream with an error event naming the input
    with httpx.stream("POST", up.api + f"/workflows/{workflow}/runs", json={"input": inputs}, timeout=30) as streamed:
        tail = list(streamed.iter_lines())[-3:]
    assert "event: error" in tail and any(f"input '{field}'" in line for line in tail), tail
    assert_no_traceback(up)


def test_values_in_the_url_path_cannot_walk_or_cut_it(up: UpHandle) -> None:
    """`chat/completions` would be two segments: encoded, it is one, which the fake does not
    serve (404): the request did not reach /v1/chat/completions."""
    for path in ("chat/completions", "../v1/chat/completions", "models#x", "..", "x?y=1"):
        response = post(up, "/workflows/urlw/runs", json.dumps({"input": {"path": path}}).encode())
        assert response.status_code == 502, (path, response.text)
        assert "answered 404" in response.json()["error"], response.text
    assert_no_traceback(up)


def test_a_raw_value_is_sent_as_written(tmp_path, flowctl_up) -> None:
    port = free_port()
    flow = fake_flow_yaml(port, tokens=3).replace("workflows:\n", URL_WORKFLOW.format(port=port).replace("${input.path}", "${input.path as raw}"), 1)
    other = flowctl_up(flow)
    response = post(other, "/workflows/urlw/runs", json.dumps({"input": {"path": "chat/completions"}}).encode())
    assert response.status_code == 200, response.text
    assert response.json()["output"] == "w0 w1 w2"


def test_a_long_workflow_id_is_not_echoed_whole(up: UpHandle) -> None:
    wanted = "y" * 10_000
    for response in (
        post(up, f"/workflows/{wanted}/runs", b"{}"),
        post(up, "/workflows/runs", json.dumps({"workflow_id": wanted}).encode()),
        httpx.get(up.api + f"/workflows/{wanted}", timeout=10),
        httpx.get(up.api + f"/runs/{wanted}", timeout=10),
        post(up, "/v1/chat/completions", json.dumps({"model": wanted, "messages": [{"role": "user", "content": "x"}]}).encode(), root=True),
    ):
        assert response.status_code == 404, response.text[:200]
        assert len(response.content) < 1000, response.text[:200]


# -- browsers (point 6) --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_a_post_that_is_not_declared_json_is_refused(up: UpHandle, content_type: str | None) -> None:
    """A browser sends these cross-site without asking first; none may start a run."""
    raw = b'{"input": {"prompt": "hi"}}'
    for route, root in (("/workflows/chat/runs", False), ("/workflows/runs", False), ("/v1/chat/completions", True)):
        body = raw if not root else b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'
        response = post(up, route, body, content_type=content_type, root=root)
        assert response.status_code == 415, (route, response.text)
    assert post(up, "/workflows/complete/runs", raw, content_type="application/json; charset=utf-8").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "flows.example.test.evil.example", "localhost.evil.example"])
def test_a_foreign_host_header_is_refused_on_both_ports(up: UpHandle, host: str) -> None:
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends this Host."""
    for url in (up.api + "/workflows", up.root + "/v1/models", f"{up.ui}/", f"{up.ui}/api/workflows"):
        response = httpx.get(url, headers={"host": host}, timeout=10)
        assert response.status_code == 403, (url, response.text)
        assert "allowed_hosts" in response.text
    assert post(up, "/workflows/complete/runs", b'{"input": {"prompt": "hi"}}', host=host).status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]:9", "localhost", "app.localhost:1", "flows.example.test", "box.lan.test", "10.1.2.3"])
def test_hosts_that_cannot_be_rebound_or_are_configured_are_served(up: UpHandle, host: str) -> None:
    assert httpx.get(up.api + "/workflows", headers={"host": host}, timeout=10).status_code == 200
