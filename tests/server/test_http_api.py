"""The native API and the model-compose compatible route, over real HTTP against a real
`flowctl up` (one per module: these tests only read or start their own runs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from support.fake import expected_text, expected_tokens
from support.flowctl_up import UpHandle, fake_flow_yaml, start_up
from support.procs import free_port
from support.waiting import wait_until

import flowctl

TOKENS = 8


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpHandle]:
    tmp: Path = tmp_path_factory.mktemp("api")
    handle = start_up(fake_flow_yaml(free_port(), tokens=TOKENS), tmp)
    yield handle
    handle.stop()


@pytest.fixture
def client(up: UpHandle) -> Iterator[httpx.Client]:
    with up.client(timeout=10.0) as c:
        yield c


def no_traceback(response: httpx.Response) -> None:
    assert "Traceback" not in response.text and 'File "' not in response.text


# -- reading ----------------------------------------------------------------------------------


def test_health_and_ready(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["services"]["llm"]["state"] == "ready"
    assert isinstance(body["services"]["llm"]["pid"], int)
    assert "reload_error" not in body


def test_workflows(client: httpx.Client) -> None:
    listed = {w["id"]: w for w in client.get("/workflows").json()}
    assert set(listed) == {"chat", "complete"}
    assert listed["chat"]["default"] is True and listed["complete"]["default"] is False
    assert listed["chat"]["streams"] is True and listed["complete"]["streams"] is False
    chat = client.get("/workflows/chat").json()
    assert chat["title"] == "Chat"
    assert chat["input"]["type"] == "object"
    assert chat["input"]["required"] == ["prompt"]
    assert chat["input"]["properties"]["temperature"] == {"type": "number", "default": 0.7}
    assert chat["output"]["type"] == "stream/text"
    assert client.get("/workflows/complete").json()["output"]["type"] == "value"


def test_graph(client: httpx.Client) -> None:
    mermaid = client.get("/workflows/chat/graph")
    assert mermaid.status_code == 200 and mermaid.headers["content-type"].startswith("text/plain")
    assert mermaid.text.startswith("graph TD") and "n_chat" in mermaid.text and "n_complete" not in mermaid.text
    graph = client.get("/workflows/chat/graph", params={"format": "json"}).json()
    assert {n["id"] for n in graph["nodes"]} == {"llm", "chat", "reply"}
    assert client.get("/workflows/chat/graph", params={"format": "png"}).status_code == 422


def test_openapi_is_served(client: httpx.Client) -> None:
    schema = client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/api/workflows/{workflow_id}/runs" in schema.json()["paths"]
    assert {"/health", "/version"} <= set(schema.json()["paths"])


def test_the_docs_page_loads_nothing_from_another_host(client: httpx.Client) -> None:
    """Litestar's pages load their scripts from CDNs (blank offline); every URL the page
    names must be on this server, and answer. The browser test renders it with the network cut."""
    page = client.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert len(urls) == 3, urls  # Swagger UI's script, its preset, its stylesheet
    for url in urls:
        assert url.startswith("/api/schema/static/"), url
        asset = client.get(url[len("/api"):])
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    for cdn_page in ("/schema/redoc", "/schema/rapidoc", "/schema/elements", "/schema/scalar"):
        assert client.get(cdn_page).status_code == 404, cdn_page


def test_model_server_conventions_at_the_root(up: UpHandle) -> None:
    """vLLM's `GET /health` and `GET /version` at the root, where load balancers and
    Kubernetes probes look, whatever the flow's base_path."""
    health = httpx.get(up.root + "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    version = httpx.get(up.root + "/version")
    assert version.status_code == 200 and version.json() == {"version": flowctl.__version__}


@pytest.mark.parametrize("path", ["/metrics", "/api/workflows/chat/graph", "/api/schema", "/api/schema/static/swagger-ui.css", "/health", "/v1/models"])
def test_one_charset_per_content_type(up: UpHandle, path: str) -> None:
    content_type = httpx.get(up.root + path).headers["content-type"]
    assert content_type.count("charset") <= 1, content_type


# -- runs ---------------------------------------------------------------------------------


def test_a_streamed_run_is_framed_as_sse(client: httpx.Client) -> None:
    with connect_sse(client, "POST", "/workflows/chat/runs", json={"input": {"prompt": "hi"}}) as source:
        response = source.response
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        run_id = response.headers["x-run-id"]
        events = list(source.iter_sse())
    chunks = [e for e in events if e.event == "message"]
    assert [e.data for e in chunks] == expected_tokens(TOKENS)
    assert [e.id for e in chunks] == [str(i) for i in range(1, TOKENS + 1)]
    assert events[-1].event == "done"
    done = json.loads(events[-1].data)
    assert done["run_id"] == run_id and done["status"] == "succeeded" and done["chunks"] == TOKENS
    assert isinstance(done["elapsed_ms"], int)
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "succeeded" and run["chunks"] == TOKENS and run["workflow_id"] == "chat"


def test_accept_json_collects_the_stream(client: httpx.Client) -> None:
    r = client.post("/workflows/chat/runs", json={"input": {"prompt": "hi", "max_tokens": 3}}, headers={"Accept": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert body["output"] == expected_text(3) and body["status"] == "succeeded" and body["chunks"] == 3
    assert set(body) >= {"run_id", "status", "output", "chunks", "elapsed_ms"}


def test_a_value_output_answers_json(client: httpx.Client) -> None:
    r = client.post("/workflows/complete/runs", json={"input": {"prompt": "echo: one two"}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["output"] == "one two"


def test_an_upstream_failure_after_the_stream_began_ends_with_an_error_event(client: httpx.Client) -> None:
    with connect_sse(client, "POST", "/workflows/chat/runs", json={"input": {"prompt": "hi", "fail_status": "500"}}) as source:
        events = list(source.iter_sse())
    assert events[-1].event == "error"
    message = json.loads(events[-1].data)["message"]
    assert "500" in message and "chat" in message and "Traceback" not in message
    collected = client.post("/workflows/chat/runs", json={"input": {"prompt": "hi", "fail_status": "500"}}, headers={"Accept": "application/json"})
    assert collected.status_code == 502 and collected.json()["status"] == "failed"
    no_traceback(collected)


# -- refusals before anything runs ------------------------------------------------------------


def test_a_missing_required_input_is_422_naming_it(client: httpx.Client) -> None:
    r = client.post("/workflows/chat/runs", json={"input": {}})
    assert r.status_code == 422
    assert r.json()["field"] == "prompt" and "prompt" in r.json()["error"]


def test_a_value_that_does_not_cast_is_422_naming_it(client: httpx.Client) -> None:
    r = client.post("/workflows/chat/runs", json={"input": {"prompt": "hi", "temperature": "hot"}})
    assert r.status_code == 422
    assert r.json()["field"] == "temperature"
    no_traceback(r)


def test_malformed_bodies(client: httpx.Client) -> None:
    r = client.post("/workflows/chat/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = client.post("/workflows/chat/runs", json={"input": ["x"]})
    assert r.status_code == 422 and r.json()["field"] == "input"
    r = client.post("/workflows/chat/runs", json=[1, 2])
    assert r.status_code == 422


def test_unknown_things_are_404(client: httpx.Client) -> None:
    for r in (
        client.post("/workflows/nope/runs", json={"input": {"prompt": "x"}}),
        client.get("/workflows/nope"),
        client.get("/workflows/nope/graph"),
        client.get("/runs/0123456789abcdef"),
        client.post("/runs/0123456789abcdef/cancel"),
        client.get("/no/such/route"),
    ):
        assert r.status_code == 404, r.request.url
        assert "error" in r.json()
        no_traceback(r)
    assert "chat" in client.post("/workflows/nope/runs", json={"input": {}}).json()["error"]


def test_a_body_over_the_limit_is_413(client: httpx.Client) -> None:
    big = {"input": {"prompt": "x" * (1_100_000)}}
    r = client.post("/workflows/chat/runs", json=big)
    assert r.status_code == 413
    no_traceback(r)


# -- model-compose compatible route -------------------------------------------------------------


def test_compat_streams_data_events_for_output_only(client: httpx.Client) -> None:
    body = {"workflow_id": "chat", "input": {"prompt": "hi"}, "output_only": True, "wait_for_completion": True}
    with client.stream("POST", "/workflows/runs", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = list(r.iter_lines())
    data = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    # a model-compose client reads the `data:` lines: the chunks, then our end event
    assert "".join(data[:-1]) == expected_text(TOKENS)
    assert json.loads(data[-1])["status"] == "succeeded"


def test_compat_defaults_to_the_default_workflow(client: httpx.Client) -> None:
    for workflow_id in (None, "__absent__"):
        body = {"input": {"prompt": "hi", "max_tokens": 2}}
        if workflow_id is None:
            body["workflow_id"] = None
        r = client.post("/workflows/runs", json=body)
        assert r.status_code == 200
        result = r.json()
        assert result["output"] == expected_text(2) and result["status"] == "completed"
        assert result["run_id"] == result["task_id"]


def test_compat_default_alias_picks_the_default_of_several_workflows(client: httpx.Client) -> None:
    r = client.post("/workflows/runs", json={"workflow_id": "__default__", "input": {"prompt": "hi", "max_tokens": 3}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == expected_text(3)


def test_compat_output_only_for_a_value(client: httpx.Client) -> None:
    r = client.post("/workflows/runs", json={"workflow_id": "complete", "input": {"prompt": "echo: a b"}, "output_only": True})
    assert r.status_code == 200 and r.json() == "a b"


def test_compat_without_waiting(client: httpx.Client) -> None:
    r = client.post("/workflows/runs", json={"workflow_id": "chat", "input": {"prompt": "hi"}, "wait_for_completion": False})
    assert r.status_code == 202
    run_id = r.json()["run_id"]
    assert r.json()["status"] in ("pending", "processing", "completed")
    run = wait_until(lambda: (lambda b: b if b["status"] == "succeeded" else None)(client.get(f"/runs/{run_id}").json()), timeout=10)
    assert run["output"] == expected_text(TOKENS)
    task = client.get(f"/tasks/{run_id}").json()
    assert task["status"] == "completed" and task["output"] == expected_text(TOKENS)
    assert client.get(f"/tasks/{run_id}", params={"output_only": "true"}).json() == expected_text(TOKENS)


def test_compat_refusals(client: httpx.Client) -> None:
    r = client.post("/workflows/runs", json={"workflow_id": "nope", "input": {}})
    assert r.status_code == 404
    r = client.post("/workflows/runs", json={"workflow_id": "chat", "input": {"prompt": "x"}, "output_only": True, "wait_for_completion": False})
    assert r.status_code == 400
    r = client.post("/workflows/runs", json={"workflow_id": "chat", "input": {"temperature": "warm", "prompt": "x"}})
    assert r.status_code == 422 and r.json()["field"] == "temperature"
