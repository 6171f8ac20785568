"""model-compose's `mcp-server` controller: the flow's workflows served as MCP tools.

model-compose's `mcp-servers/slack-bot` example runs under `flowctl up` against a stand-in
of Slack's Web API (`tests/servers/slack_api.py`), its `base_url` pointed there, and is driven
by the official `mcp` SDK's client over Streamable HTTP: initialize, list the tools (names,
schemas with the `@(description ...)` texts), call each. A failing upstream is a tool result
with `isError`; bad arguments and malformed JSON-RPC get JSON-RPC errors; a foreign `Origin`
gets 403. The lowering itself (`server.mcp_path`) is checked on the spec."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from support.flowctl_up import UpHandle, fake_flow_yaml, start_up
from support.model_compose import assert_error_at, spec_of
from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port, kill_process_group, port_in_use
from support.waiting import wait_until

from flowctl.engine.errors import FlowError
from flowctl.engine.flow import load_flow_text

#: model-compose's examples/mcp-servers/slack-bot/model-compose.yml, as published
SLACK_BOT = """\
controller:
  type: mcp-server
  base_path: /mcp
  port: 8080
  webui:
    driver: gradio
    port: 8081

workflows:
  send-message:
    action: chat-post-message
    input:
      channel: ${input.channel | ${env.DEFAULT_SLACK_CHANNEL_ID} @(description Slack channel ID for sending a message)}
      text: ${input.messsage @(description Message to send to Slack)}
    output: ${output as json}

  list-channels:
    action: conversations-list
    output: ${output as object[]}

  join-channel:
    action: conversations-join
    input:
      channel: ${input.channel | ${env.DEFAULT_SLACK_CHANNEL_ID}}
    output: ${output as json}

component:
  type: http-client
  base_url: https://slack.com/api
  headers:
    Authorization: Bearer ${env.SLACK_APP_TOKEN}
  actions:
    chat-post-message:
      path: /chat.postMessage
      method: POST
      body:
        channel: ${input.channel}
        text: ${input.text}
        attachments: ${input.attachments}
      headers:
        Content-Type: application/json
      output: ${response}
    
    conversations-list:
      path: /conversations.list
      method: GET
      params:
        limit: ${input.limit as integer | 200 @(description Maximum number of channels to retrieve)}
      headers:
        Content-Type: application/x-www-form-urlencoded
      output: ${response.channels as object[]/id,name}

    conversations-join:
      path: /conversations.join
      method: POST
      body:
        channel: ${input.channel}
      headers:
        Content-Type: application/json
      output: ${response}
"""

TOKEN = "xoxb-stand-in"


@pytest.fixture(scope="module")
def slack() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(TESTS_DIR / "servers" / "slack_api.py"), "--port", str(port), "--token", TOKEN],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: port_in_use(port) or proc.poll() is not None, timeout=20, message="slack_api did not listen")
        assert proc.poll() is None, f"slack_api exited with {proc.returncode}"
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_process_group(proc, grace=2.0)


@pytest.fixture(scope="module")
def bot(slack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpHandle]:
    flow = SLACK_BOT.replace("https://slack.com/api", slack)
    up = start_up(flow, tmp_path_factory.mktemp("slack-bot"), flow_name="model-compose.yml", ui_port=None,
                  env={"SLACK_APP_TOKEN": TOKEN, "DEFAULT_SLACK_CHANNEL_ID": "C02"})
    try:
        yield up
    finally:
        up.stop()


def mcp_url(up: UpHandle) -> str:
    return up.root + "/mcp"


async def with_session(up: UpHandle, work: Any) -> Any:
    """Run `work(session)` on an initialized MCP client session (the SDK's own client)."""
    async with httpx.AsyncClient(headers=up.headers, timeout=30) as http, streamable_http_client(mcp_url(up), http_client=http) as (read, write, _), \
            ClientSession(read, write) as session:
        info = await session.initialize()
        assert info.serverInfo.version and info.capabilities.tools is not None
        return await work(session)


def call(up: UpHandle, work: Any) -> Any:
    """`work` on a session; an error it raises comes out as itself, not in the client's task
    groups' exception groups."""
    try:
        return asyncio.run(asyncio.wait_for(with_session(up, work), timeout=60))
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        raise leaf from None


def rpc(up: UpHandle, body: Any, *, headers: dict[str, str] | None = None, content: bytes | None = None) -> httpx.Response:
    """One raw POST to the MCP endpoint."""
    sent = {"content-type": "application/json", "accept": "application/json, text/event-stream", **(headers or {})}
    payload = content if content is not None else json.dumps(body).encode()
    return httpx.post(mcp_url(up), content=payload, headers=sent, timeout=30)


# -- through the SDK's client ----------------------------------------------------------------


def test_the_tools_are_the_workflows_with_their_input_schemas(bot: UpHandle) -> None:
    tools = {tool.name: tool for tool in call(bot, lambda s: s.list_tools()).tools}
    assert sorted(tools) == ["join-channel", "list-channels", "send-message"]
    send = tools["send-message"].inputSchema
    assert send["type"] == "object"
    assert send["properties"]["channel"]["description"] == "Slack channel ID for sending a message"
    assert send["properties"]["messsage"]["description"] == "Message to send to Slack"  # the example's own spelling
    assert send["required"] == ["messsage"]  # the channel falls back to DEFAULT_SLACK_CHANNEL_ID
    limit = tools["list-channels"].inputSchema["properties"]["limit"]
    assert limit == {"type": "integer", "description": "Maximum number of channels to retrieve", "default": 200}
    # the schema is the one the HTTP API shows (one owner), and that API stays up beside MCP
    api = httpx.get(bot.api + "/workflows/send-message", timeout=10).json()
    assert api["input"] == send


def test_each_tool_runs_its_workflow_against_slack(bot: UpHandle) -> None:
    async def work(session: ClientSession) -> list[Any]:
        return [
            await session.call_tool("send-message", {"channel": "C01", "messsage": "deploy done"}),
            await session.call_tool("list-channels", {"limit": 2}),
            await session.call_tool("join-channel", {}),
        ]

    sent, listed, joined = call(bot, work)
    assert not sent.isError and not listed.isError and not joined.isError
    message = json.loads(sent.content[0].text)
    assert message["ok"] is True and message["channel"] == "C01" and message["message"] == {"text": "deploy done"}
    assert sent.structuredContent == message
    assert "attachments" in message and message["attachments"] is None  # not passed by the job: null, as model-compose sends it
    assert json.loads(listed.content[0].text) == [{"id": "C01", "name": "general"}, {"id": "C02", "name": "random"}]
    assert json.loads(joined.content[0].text)["channel"] == {"id": "C02", "name": "random"}  # DEFAULT_SLACK_CHANNEL_ID


def test_a_failing_upstream_is_a_tool_error_with_its_cause(bot: UpHandle) -> None:
    result = call(bot, lambda s: s.call_tool("send-message", {"channel": "C-BROKEN", "messsage": "hi"}))
    assert result.isError is True
    cause = result.content[0].text
    assert "500" in cause and "slack is down" in cause, cause


def test_arguments_that_do_not_fit_are_a_json_rpc_error_naming_the_field(bot: UpHandle) -> None:
    with pytest.raises(McpError) as caught:
        call(bot, lambda s: s.call_tool("list-channels", {"limit": "lots"}))
    assert caught.value.error.code == -32602 and "limit" in caught.value.error.message
    assert caught.value.error.data == {"field": "limit"}
    with pytest.raises(McpError) as caught:
        call(bot, lambda s: s.call_tool("send-message", {"channel": "C01"}))
    assert caught.value.error.code == -32602 and "messsage" in caught.value.error.message
    with pytest.raises(McpError) as caught:
        call(bot, lambda s: s.call_tool("delete-workspace", {}))
    assert caught.value.error.code == -32602 and "unknown tool 'delete-workspace'" in caught.value.error.message


# -- the transport, raw ----------------------------------------------------------------------


def test_malformed_json_rpc_gets_the_json_rpc_error_for_it(bot: UpHandle) -> None:
    r = rpc(bot, None, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700 and r.json()["id"] is None
    r = rpc(bot, [{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600 and "batches" in r.json()["error"]["message"]
    r = rpc(bot, {"id": 1, "method": "ping"})
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600 and r.json()["error"]["data"] == {"field": "jsonrpc"}
    r = rpc(bot, {"jsonrpc": "2.0", "id": 7, "method": "resources/list"})
    assert r.status_code == 200 and r.json() == {"jsonrpc": "2.0", "id": 7, "error": {
        "code": -32601, "message": "method 'resources/list' is not served here (initialize, ping, tools/list, tools/call)", "data": {"field": "method"}}}
    r = rpc(bot, {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "list-channels", "arguments": [2]}})
    assert r.json()["error"]["code"] == -32602 and r.json()["error"]["data"] == {"field": "arguments"}
    r = rpc(bot, None, content=b'{"jsonrpc": "2.0", "id": 9, "method": "ping"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = rpc(bot, None, content=b'{"jsonrpc": "2.0", "id": 10, "method": "ping", "pad": "' + b"x" * 1_100_000 + b'"}')
    assert r.status_code == 413  # server.max_body_bytes, as on every route


def test_the_transport_answers_as_streamable_http_says(bot: UpHandle) -> None:
    r = rpc(bot, {"jsonrpc": "2.0", "id": "a", "method": "ping"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == {"jsonrpc": "2.0", "id": "a", "result": {}}
    r = rpc(bot, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert r.status_code == 202 and r.content == b""
    r = rpc(bot, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2099-01-01", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
    assert r.json()["result"]["protocolVersion"] == "2025-06-18"  # the newest it speaks
    r = rpc(bot, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers={"mcp-protocol-version": "1999-01-01"})
    assert r.status_code == 400 and r.json()["error"]["data"]["field"] == "MCP-Protocol-Version"
    assert httpx.get(mcp_url(bot), headers={"accept": "text/event-stream"}, timeout=10).status_code == 405  # no server-to-client stream


def test_a_foreign_origin_is_refused_and_a_local_one_served(bot: UpHandle) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    r = rpc(bot, ping, headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["error"]["message"]
    assert rpc(bot, ping, headers={"origin": "null"}).status_code == 403
    assert rpc(bot, ping, headers={"origin": f"http://localhost:{bot.api_port}"}).status_code == 200
    assert rpc(bot, ping, headers={"origin": f"http://127.0.0.1:{bot.api_port}"}).status_code == 200


def test_the_tools_follow_a_reload(slack: str, flowctl_up: Any) -> None:
    flow = SLACK_BOT.replace("https://slack.com/api", slack)
    up = flowctl_up(flow, flow_name="model-compose.yml", ui_port=None, reload=True, env={"SLACK_APP_TOKEN": TOKEN})

    def tool_names() -> list[str]:
        return [tool["name"] for tool in rpc(up, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).json()["result"]["tools"]]

    assert "recent-channels" not in tool_names()
    up.flow_path.write_text(flow.replace("  list-channels:\n", "  recent-channels:\n    action: conversations-list\n    output: ${output as object[]}\n\n  list-channels:\n"))
    wait_until(lambda: "recent-channels" in tool_names(), timeout=30, message=lambda: f"the reload's workflow is no tool\n{up.log_tail()}")


# -- a native flow opts in ------------------------------------------------------------------


def test_a_native_flow_serves_its_streamed_workflow_as_a_tool_behind_its_api_key(flowctl_up: Any) -> None:
    up = flowctl_up(fake_flow_yaml(free_port(), tokens=5, server={"mcp_path": "/mcp"}), api_key="s3cret", ui_port=None)
    tools = {tool.name: tool for tool in call(up, lambda s: s.list_tools()).tools}
    assert (tools["chat"].title, tools["chat"].description) == ("Chat", "Stream a reply from the fake vLLM server")
    assert tools["chat"].inputSchema["required"] == ["prompt"]
    result = call(up, lambda s: s.call_tool("chat", {"prompt": "hi"}))
    native = httpx.post(up.api + "/workflows/chat/runs", json={"input": {"prompt": "hi"}}, headers={**up.headers, "accept": "application/json"}, timeout=30)
    assert not result.isError and result.content[0].text == native.json()["output"] != ""  # the stream, collected
    refused = httpx.post(mcp_url(up), json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=10)
    assert refused.status_code == 401


# -- the lowering ----------------------------------------------------------------------------


def test_the_controller_lowers_to_an_mcp_path_beside_the_api() -> None:
    server = spec_of(SLACK_BOT).server
    assert (server.mcp_path, server.base_path, server.port, server.ui_port) == ("/mcp", "/api", 8080, 8081)
    assert spec_of("controller: {type: mcp-server}\n" + SLACK_BOT.split("\n\n", 1)[1]).server.mcp_path == "/"
    adapter = "controller:\n  adapter: {type: mcp-server, transport: http, port: 9000, base_path: /tools}\n"
    assert spec_of(adapter + SLACK_BOT.split("\n\n", 1)[1]).server.mcp_path == "/tools"


def test_stdio_is_refused_at_its_line() -> None:
    text = "controller:\n  adapter: {type: mcp-server, transport: stdio}\n" + SLACK_BOT.split("\n\n", 1)[1]
    assert_error_at(text, "transport: stdio", "'transport' is not supported", "only `transport: http`")


def test_the_mcp_path_must_stay_clear_of_the_api() -> None:
    native = "version: 1\nserver: {mcp_path: /api/mcp}\nnodes:\n  out: {type: sse-sink, source: hi}\n"
    with pytest.raises(FlowError) as caught:
        load_flow_text(native, "flow.yml")
    assert "'/api/mcp' lies under flowctl's API routes" in str(caught.value)
    assert_error_at(SLACK_BOT.replace("base_path: /mcp", "base_path: /v1/tools"), "base_path: /v1/tools", "'/v1/tools' lies under flowctl's API routes")
