"""The flow's workflows as MCP tools, over MCP's Streamable HTTP transport (spec 2025-06-18).

    POST {server.mcp_path}   one JSON-RPC message -> one JSON answer (`application/json`)

Served when the flow sets `server.mcp_path` (a model-compose `controller: {type: mcp-server}`
sets it to the controller's `base_path`). Each workflow is one tool: its id is the tool's
name, its title the tool's `title`, its description (else its title) the tool's description,
and its input JSON Schema (`CompiledWorkflow.input_schema`, the one the API and OpenAPI show,
`@(description ...)` texts included) the tool's `inputSchema`. A `tools/call` is a run like
any other: admitted by `FlowHost.prepare`, driven by the same `RunResponse` as the native
route (a client that goes away cancels it), its collected output answered as one `text`
content block (JSON text for a structure, which also goes in `structuredContent` when it is
an object). A failed run is a tool result with `isError: true` and the cause as its text.

JSON-RPC errors: `-32700` the body is not JSON (HTTP 400), `-32600` not one JSON-RPC 2.0
request (HTTP 400; batches, which 2025-06-18 dropped, included), `-32601` an unknown method,
`-32602` bad params: an unknown tool, or arguments that do not fit the workflow's inputs
(`data.field` names the argument).

The server keeps no session (no `Mcp-Session-Id`): each POST stands alone, as the transport
allows, so there is nothing to resume and `GET` (a server-to-client stream) is 405. The tools
are read from the flow being served at each request, so a hot reload's workflows are the
tools at once (`listChanged` is false: with no session there is no stream to announce it on).
Notifications and client responses are accepted with 202. Against DNS rebinding the spec asks
servers to check `Origin`: a request whose `Origin` names a host the `Host` rule would refuse
(`server/host_check.py`) gets 403. The API key (`FLOWCTL_API_KEY`) applies here as on every
route.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Router, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..engine.errors import BadRequest, FlowctlError, InputError
from ..engine.graph import CompiledWorkflow
from ..engine.runs import RunRecord, RunStatus
from .errors import log_refused, log_unexpected
from .host_check import host_allowed
from .request_json import load_json_body
from .routes_api import NamedDependency, ServerContext
from .streaming import JSONAnswer, RunResponse

#: protocol versions this server speaks, newest first; a client asking for another gets the newest
PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

RequestId = str | int


class RpcError(Exception):
    """A JSON-RPC error answer; `http_status` 400 when the message itself was unusable."""

    def __init__(self, code: int, message: str, *, data: dict[str, Any] | None = None, http_status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.data = data
        self.http_status = http_status


def rpc_error(request_id: RequestId | None, error: RpcError) -> JSONAnswer:
    body: dict[str, Any] = {"code": error.code, "message": str(error)}
    if error.data is not None:
        body["data"] = error.data
    return JSONAnswer(error.http_status, {"jsonrpc": "2.0", "id": request_id, "error": body})


def rpc_result(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


# -- the transport's checks --------------------------------------------------------------------


def check_origin(ctx: ServerContext, origin: str | None) -> None:
    """Browsers send `Origin` on cross-site requests: refuse any that the `Host` rule would."""
    if origin is None:
        return
    name = (urlsplit(origin).hostname or "") if origin != "null" else ""
    if not name or not host_allowed(name, ctx.bind_host, ctx.host.flow.server.allowed_hosts):
        shown = origin[:80] + ("..." if len(origin) > 80 else "")
        raise RpcError(INVALID_REQUEST, f"requests from origin '{shown}' are not served here: add its host to the flow's `server.allowed_hosts` "
                       "(MCP servers check Origin against DNS rebinding)", http_status=403)


def check_version_header(value: str | None) -> None:
    if value is not None and value not in PROTOCOL_VERSIONS:
        raise RpcError(INVALID_REQUEST, f"MCP-Protocol-Version {value[:40]!r} is not supported; this server speaks {', '.join(PROTOCOL_VERSIONS)}",
                       data={"field": "MCP-Protocol-Version", "supported": list(PROTOCOL_VERSIONS)}, http_status=400)


def read_message(content_type: str | None, raw: bytes) -> dict[str, Any]:
    """The body as one JSON-RPC message (a request, a notification or a response)."""
    try:
        message = load_json_body(content_type, raw)
    except BadRequest as exc:
        if exc.status_code == 415:
            raise RpcError(INVALID_REQUEST, str(exc), data={"field": "content-type"}, http_status=415) from None
        raise RpcError(PARSE_ERROR, f"parse error: {exc}", http_status=400) from None
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "JSON-RPC batches are not supported (MCP 2025-06-18 removed them): send one message per POST", http_status=400)
    if not isinstance(message, dict):
        raise RpcError(INVALID_REQUEST, "the body must be one JSON-RPC 2.0 message (a JSON object)", http_status=400)
    if message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'a JSON-RPC message needs `"jsonrpc": "2.0"`', data={"field": "jsonrpc"}, http_status=400)
    return message


def request_id_of(message: dict[str, Any]) -> RequestId | None:
    """The id of a request (None for a notification). MCP ids are strings or integers."""
    if "id" not in message:
        return None
    value = message["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RpcError(INVALID_REQUEST, "`id` must be a string or an integer", data={"field": "id"}, http_status=400)
    return value


def params_of(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RpcError(INVALID_PARAMS, "`params` must be an object", data={"field": "params"})
    return params


# -- the methods -------------------------------------------------------------------------------


def initialize(ctx: ServerContext, params: dict[str, Any]) -> dict[str, Any]:
    asked = params.get("protocolVersion")
    if not isinstance(asked, str):
        raise RpcError(INVALID_PARAMS, "`params.protocolVersion` must be a string", data={"field": "protocolVersion"})
    flow = ctx.host.flow
    result: dict[str, Any] = {
        "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {"name": flow.name, "version": __version__},
    }
    if flow.spec.description:
        result["instructions"] = flow.spec.description
    return result


def tool_of(workflow: CompiledWorkflow) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": workflow.id, "description": workflow.description or workflow.title or "", "inputSchema": workflow.input_schema}
    if workflow.title:
        tool["title"] = workflow.title
    return tool


def list_tools(ctx: ServerContext) -> dict[str, Any]:
    return {"tools": [tool_of(workflow) for workflow in ctx.host.flow.workflows.values()]}


def call_tool(ctx: ServerContext, request_id: RequestId, params: dict[str, Any]) -> ASGIApp:
    name = params.get("name")
    if not isinstance(name, str):
        raise RpcError(INVALID_PARAMS, "`params.name` must be the tool's name (a string)", data={"field": "name"})
    tools = list(ctx.host.flow.workflows)
    if name not in tools:
        raise RpcError(INVALID_PARAMS, f"unknown tool '{name[:80]}' (tools: {', '.join(tools)})", data={"field": "name", "tools": tools})
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise RpcError(INVALID_PARAMS, "`params.arguments` must be an object of input names to values", data={"field": "arguments"})
    try:
        run = ctx.host.prepare(name, arguments)
    except (InputError, BadRequest) as exc:
        data = {"field": exc.field} if exc.field is not None else None
        raise RpcError(INVALID_PARAMS, str(exc), data=data) from None
    except FlowctlError as exc:  # busy, shutting down, a service not ready: the call fails, the session goes on
        return JSONAnswer(200, rpc_result(request_id, tool_failure(str(exc))))

    def render(record: RunRecord, output: Any, error: BaseException | None) -> tuple[int, Any]:
        if isinstance(error, FlowctlError):
            return 200, rpc_result(request_id, tool_failure(str(error)))
        if error is not None:
            return 200, rpc_result(request_id, tool_failure(f"internal error (id {log_unexpected(error)})"))
        if record.status is not RunStatus.SUCCEEDED:
            return 200, rpc_result(request_id, tool_failure(record.error or f"the run {record.status.value}"))
        return 200, rpc_result(request_id, tool_success(output, record.id))

    return RunResponse(ctx.host, run, sse=False, render=render)


def tool_failure(cause: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": cause}], "isError": True}


def tool_success(output: Any, run_id: str) -> dict[str, Any]:
    """A run's output as MCP content, as model-compose gives it: text as it is, a structure as
    JSON text, no output as no content; bytes as a base64 resource."""
    result: dict[str, Any] = {"isError": False}
    if output is None:
        result["content"] = []
    elif isinstance(output, bytes):
        result["content"] = [{"type": "resource", "resource": {"uri": f"flowctl://runs/{run_id}/output", "mimeType": "application/octet-stream", "blob": b64encode(output).decode()}}]
    elif isinstance(output, str):
        result["content"] = [{"type": "text", "text": output}]
    else:
        result["content"] = [{"type": "text", "text": json.dumps(output, ensure_ascii=False, default=str)}]
        if isinstance(output, dict):
            result["structuredContent"] = output
    return result


async def accepted(scope: Scope, receive: Receive, send: Send) -> None:
    """202 with no body: the transport's answer to a notification or a response."""
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- the route ---------------------------------------------------------------------------------


@post("/", include_in_schema=False)
async def mcp_endpoint(ctx: NamedDependency[ServerContext], request: Request[Any, Any, Any]) -> ASGIApp:
    request_id: RequestId | None = None
    try:
        check_origin(ctx, request.headers.get("origin"))
        check_version_header(request.headers.get("mcp-protocol-version"))
        message = read_message(request.headers.get("content-type"), await request.body())
        request_id = request_id_of(message)
        method = message.get("method")
        if method is None:  # the client answering a server request: this server sends none
            if request_id is not None and ("result" in message or "error" in message):
                return accepted
            raise RpcError(INVALID_REQUEST, "a JSON-RPC request needs a `method`", data={"field": "method"}, http_status=400)
        if not isinstance(method, str):
            raise RpcError(INVALID_REQUEST, "`method` must be a string", data={"field": "method"}, http_status=400)
        if request_id is None:  # a notification (initialized, cancelled, ...): nothing to answer
            return accepted
        params = params_of(message)
        if method == "initialize":
            return JSONAnswer(200, rpc_result(request_id, initialize(ctx, params)))
        if method == "ping":
            return JSONAnswer(200, rpc_result(request_id, {}))
        if method == "tools/list":
            return JSONAnswer(200, rpc_result(request_id, list_tools(ctx)))
        if method == "tools/call":
            return call_tool(ctx, request_id, params)
        raise RpcError(METHOD_NOT_FOUND, f"method '{method[:80]}' is not served here (initialize, ping, tools/list, tools/call)", data={"field": "method"})
    except RpcError as exc:
        log_refused(request.method, request.url.path, 400 if exc.http_status == 200 else exc.http_status, str(exc))
        return rpc_error(request_id, exc)
    except (FlowctlError, HTTPException):
        raise  # the app's handler answers these (a body over max_body_bytes: 413)
    except Exception as exc:  # a bug: the client gets an id, the log the traceback
        return rpc_error(request_id, RpcError(INTERNAL_ERROR, f"internal error (id {log_unexpected(exc)})", http_status=500))


def mcp_router(ctx: ServerContext, path: str) -> Router:
    return Router(
        path=path,
        route_handlers=[mcp_endpoint],
        dependencies={"ctx": Provide(lambda: ctx, use_cache=True, sync_to_thread=False)},
    )


__all__ = ["PROTOCOL_VERSIONS", "mcp_router", "tool_of", "tool_success"]
