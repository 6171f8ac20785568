"""Secrets and URLs (issue 15, point 5): a key in a templated query string or user info never
reaches a client's error; values interpolated into a URL are percent-encoded for their URL
part (`as raw` opts out); `FLOWCTL_API_KEY` is not in managed processes' environments."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from support.flowctl_up import fake_flow_yaml
from support.procs import free_port
from support.waiting import wait_until

from flowctl.engine.errors import InputError, UpstreamError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.scheduler import new_http_client, run_workflow
from flowctl.engine.templating import compile_value, validate_inputs
from flowctl.nodes.http_url import redact_url, render_url

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cret-k3y"


def one_node_flow(url: str, **fields: str) -> str:
    extra = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in fields.items())
    return f"""
nodes:
  call:
    type: http-stream
    url: {json.dumps(url)}
    stream_format: null
{extra}  out: {{type: sse-sink, source: "${{nodes.call.output as stream/text}}"}}
"""


async def run_once(flow_text: str, inputs: dict | None = None) -> list:
    flow = load_flow_text(flow_text)
    workflow = flow.default_workflow
    async with new_http_client() as http:
        chunks = run_workflow(flow, workflow, validate_inputs(workflow.inputs, inputs or {}), run_id="t", http=http, service_outputs={})
        try:
            return [chunk async for chunk in chunks]
        finally:
            await chunks.aclose()


class Recorder:
    """A TCP server on 127.0.0.1 that records each request head and answers 500 (with the
    request target in the body, as a careless upstream might)."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            body = b'{"error": "no"}'
            writer.write(b"HTTP/1.1 500 Oops\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()

    def targets(self) -> list[str]:
        return [head.split(b" ", 2)[1].decode() for head in self.heads]


async def test_query_strings_and_user_info_never_reach_the_error(monkeypatch) -> None:
    monkeypatch.setenv("FLOWCTL_TEST_SECRET", SECRET)
    async with Recorder() as upstream:
        for url in (
            f"http://127.0.0.1:{upstream.port}/v1/x?key=${{env.FLOWCTL_TEST_SECRET}}",
            f"http://user:${{env.FLOWCTL_TEST_SECRET}}@127.0.0.1:{upstream.port}/v1/x",
            f"http://127.0.0.1:{free_port()}/v1/x?key=${{env.FLOWCTL_TEST_SECRET}}",  # nobody listens
        ):
            with pytest.raises(UpstreamError) as caught:
                await run_once(one_node_flow(url))
            assert SECRET not in str(caught.value), str(caught.value)
            assert "127.0.0.1" in str(caught.value)
        assert any(SECRET in target for target in upstream.targets()), "the secret was not sent at all"


async def test_interpolated_values_stay_inside_their_url_part() -> None:
    async with Recorder() as upstream, Recorder() as elsewhere:
        url = f"http://127.0.0.1:{upstream.port}/v1/${{input.path}}?q=${{input.q}}&n=1"
        with pytest.raises(UpstreamError):
            await run_once(one_node_flow(url), {"path": "../../admin", "q": "a&b=1#frag"})
        assert upstream.targets() == ["/v1/..%2F..%2Fadmin?q=a%26b%3D1%23frag&n=1"]
        # a value in the authority cannot name another host and port
        url = f"http://127.0.0.1:{upstream.port}${{input.suffix}}"
        with pytest.raises(InputError) as caught:
            await run_once(one_node_flow(url), {"suffix": f"@127.0.0.1:{elsewhere.port}/x"})
        assert caught.value.field == "suffix"
        assert elsewhere.heads == []


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("http://h/v1/${input.v}", "http://h/v1/a%2Fb%3Fc%23d%25e"),
        ("http://h/v1/${input.dots}/x", "http://h/v1/%2E%2E/x"),
        ("http://h/q?a=${input.v}#${input.v}", "http://h/q?a=a%2Fb%3Fc%23d%25e#a%2Fb%3Fc%23d%25e"),
        ("http://${input.host}:8000/", "http://evil%40h%2Fx:8000/"),
        ("${nodes.api.output.url}/v1/${input.v}", "http://127.0.0.1:8000/v1/a%2Fb%3Fc%23d%25e"),
        ("http://h/models/${input.v as raw}", "http://h/models/a/b?c#d%e"),
        ("${nodes.api.output.url}", "http://127.0.0.1:8000"),
    ],
)
def test_render_url_encodes_per_part(template: str, expected: str) -> None:
    scope = {"input": {"v": "a/b?c#d%e", "dots": "..", "host": "evil@h/x"}, "nodes": {"api": {"output": {"url": "http://127.0.0.1:8000"}}}}
    assert render_url(compile_value(template), scope) == expected


def test_redact_url() -> None:
    assert redact_url(f"http://me:{SECRET}@h:1/p?key={SECRET}#f") == "http://***@h:1/p?***"
    assert redact_url("http://h/p") == "http://h/p"


def test_the_api_key_is_not_in_managed_processes_environments(flowctl_up, tmp_path: Path) -> None:
    seen = tmp_path / "env.json"
    recorder = f"import json, os, time; open({str(seen)!r}, 'w').write(json.dumps(dict(os.environ))); time.sleep(300)"
    node = (
        "  envdump:\n    type: process-start\n"
        f"    command: {json.dumps([sys.executable, '-c', recorder])}\n"
        "    restart: never\n    stop_timeout: 1\n"
    )
    flow = fake_flow_yaml(free_port(), tokens=2).replace("nodes:\n", "nodes:\n" + node, 1)
    flowctl_up(flow, api_key=SECRET)
    env = wait_until(lambda: seen.exists() and seen.read_text() and json.loads(seen.read_text()), timeout=20)
    assert "FLOWCTL_API_KEY" not in env
    assert SECRET not in json.dumps(env)
