"""The OpenAI-compatible facade (SPEC §9), at the app's root so `base_url=".../v1"` works.

    GET  /v1/models                  each text-output workflow, as a model
    GET  /v1/models/{model}          one of them
    POST /v1/chat/completions        run the workflow named by `model`

A workflow whose output is a text stream (or a plain value, read as text) is a model named
by its workflow id, or by its `openai.model`. The chat request becomes the run's input:

- an input named `messages` gets the whole message list, as sent;
- an input named `prompt` gets the last user message's content (text parts joined by `\\n`);
- `temperature`, `max_tokens` (or `max_completion_tokens`), `top_p`, `stop` fill same-named
  inputs when the request has them;
- `openai.inputs` (native form) overrides any of these: `{INPUT: TEMPLATE}` with templates
  over the request body as source `request` (and `env`), checked when the flow compiles.

`stream: true` answers with OpenAI's chunk stream: a role delta, one content delta per chunk
the workflow streams (token for token), a final chunk carrying `finish_reason`, with
`stream_options: {include_usage: true}` a chunk with `usage` (when the run's upstreams
reported token counts, see `engine/usage.py`), then `data: [DONE]`. A failure after the
stream began is a `data: {"error": {...}}` event (the `openai` package raises it as
`APIError`) followed by `data: [DONE]`. Otherwise the answer is
one `chat.completion`. Errors before the run use OpenAI's body
`{"error": {"message", "type", "param", "code"}}`: 400 for a bad request (including inputs
that do not cast), 404 for an unknown model, 429 when the workflow's queue is full, 503 when a
service is not ready. A client that goes away cancels the run and closes the upstream request,
as on the native route (the same `RunResponse` drives both).

The per-token path does one string concatenation and a C-level JSON escape of the token: the
JSON around it is fixed per run and built once (`ChunkEncoder`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from json.encoder import encode_basestring  # C-accelerated
from typing import Any

from litestar import Request, Router, get, post
from litestar.params import FromPath
from litestar.types import ASGIApp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..engine.errors import BadRequest, FlowctlError, InputError, ModelNotFound, RunCancelled, RunFailed, TemplateError
from ..engine.graph import CompiledFlow, CompiledWorkflow
from ..engine.host import FlowHost, PreparedRun
from ..engine.runs import RunRecord, RunStatus
from ..engine.scheduler import chunk_text
from ..engine.usage import TokenUsage
from .errors import log_refused, openai_error_body, retry_headers
from .request_json import load_json_body
from .routes_api import ServerContext
from .streaming import JSONAnswer, RunResponse

#: request fields that fill workflow inputs of the same name when the request has them
SAMPLING_FIELDS = ("temperature", "max_tokens", "top_p", "stop")

# -- the request --------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The fields of OpenAI's chat request the facade reads; other keys are accepted and
    ignored (they stay visible to `openai.inputs` templates as `request.<key>`)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)


def error_answer(exc: BaseException) -> JSONAnswer:
    status, body = openai_error_body(exc)
    return JSONAnswer(status, body, retry_headers(exc))


# -- models --------------------------------------------------------------------------------------


def is_model(workflow: CompiledWorkflow) -> bool:
    """A workflow answers chat requests when its output reads as text (or it says it does)."""
    return workflow.openai is not None or workflow.output_type in ("stream/text", "value")


def model_name(workflow: CompiledWorkflow) -> str:
    return workflow.openai.model if workflow.openai is not None and workflow.openai.model else workflow.id


def models_of(flow: CompiledFlow) -> dict[str, CompiledWorkflow]:
    """Model name -> workflow (the first workflow claiming a name wins)."""
    models: dict[str, CompiledWorkflow] = {}
    for workflow in flow.workflows.values():
        if is_model(workflow):
            models.setdefault(model_name(workflow), workflow)
    return models


def model_card(name: str, created: int, flow: CompiledFlow) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": f"flowctl:{flow.name}"}


# -- the mapping -----------------------------------------------------------------------------------


def message_text(content: Any) -> str:
    """A message's content as text: a string as is, content parts' texts joined by `\\n`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "\n".join(texts)


def map_inputs(workflow: CompiledWorkflow, request: ChatCompletionRequest, body: Mapping[str, Any]) -> dict[str, Any]:
    """The run's raw input for a chat request (SPEC §9); validated by `host.prepare` after."""
    inputs = workflow.inputs
    raw: dict[str, Any] = {}
    if "messages" in inputs:
        raw["messages"] = body["messages"]
    if "prompt" in inputs and "prompt" not in workflow.openai_inputs:
        for message in reversed(body["messages"]):
            if isinstance(message, Mapping) and message.get("role") == "user":
                raw["prompt"] = message_text(message.get("content"))
                break
        else:
            if inputs["prompt"].required:
                raise BadRequest("the request has no user message to use as the workflow's `prompt`", field="messages")
    values = {
        "temperature": request.temperature,
        "max_tokens": request.max_tokens if request.max_tokens is not None else request.max_completion_tokens,
        "top_p": request.top_p,
        "stop": request.stop,
    }
    for name in SAMPLING_FIELDS:
        if name in inputs and values[name] is not None:
            raw[name] = values[name]
    if workflow.openai_inputs:
        scope = {"request": body, "env": os.environ}
        for name, template in workflow.openai_inputs.items():
            try:
                raw[name] = template.render(scope)
            except TemplateError as exc:
                raise InputError(name, f"(openai.inputs) {exc}") from None
    return raw


def parse_request(content_type: str | None, raw: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """The request body, checked (see `request_json`): (model, raw JSON). Raises BadRequest
    (400, or 415 when it is not declared JSON)."""
    body = load_json_body(content_type, raw)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        more = exc.error_count() - 1
        message = f"{param}: {first['msg']}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
        raise BadRequest(message, field=param) from None
    if request.n not in (None, 1):
        raise BadRequest("only n=1 is supported", field="n")
    return request, body


# -- the answers ------------------------------------------------------------------------------------


class ChunkEncoder:
    """OpenAI `chat.completion.chunk` events for one run, as bytes. Everything but the token's
    text is formatted once, here.

        >>> enc = ChunkEncoder("chatcmpl-1", "chat", 1700000000)
        >>> enc.content('say "hi"')
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"chat","choices":[{"index":0,"delta":{"content":"say \\\\"hi\\\\""},"logprobs":null,"finish_reason":null}]}\\n\\n'
    """

    DONE = b"data: [DONE]\n\n"

    __slots__ = ("_head", "_prefix", "_stem", "_suffix")

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        self._stem = f'data: {{"id":{encode_basestring(completion_id)},"object":"chat.completion.chunk","created":{created},"model":{encode_basestring(model)},'
        self._head = self._stem + '"choices":[{"index":0,"delta":'
        self._prefix = self._head + '{"content":'
        self._suffix = '},"logprobs":null,"finish_reason":null}]}\n\n'

    def content(self, text: str) -> bytes:
        return (self._prefix + encode_basestring(text) + self._suffix).encode()

    def role(self) -> bytes:
        return (self._head + '{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n').encode()

    def finish(self, reason: str = "stop") -> bytes:
        return (self._head + f'{{}},"logprobs":null,"finish_reason":{encode_basestring(reason)}}}]}}\n\n').encode()

    def usage(self, usage: TokenUsage) -> bytes:
        """OpenAI's last chunk for `include_usage`: no choices, the run's token counts."""
        return (self._stem + '"choices":[],"usage":' + json.dumps(usage.as_openai(), separators=(",", ":")) + "}\n\n").encode()

    @staticmethod
    def error(exc: BaseException) -> bytes:
        _, body = openai_error_body(exc)
        return b"data: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class ChatFraming:
    """`RunResponse`'s framing for OpenAI's chunk stream: a role chunk, one content chunk per
    workflow chunk, a `finish_reason` chunk (or an error object), the usage chunk when asked
    for and known, then `data: [DONE]`."""

    def __init__(self, encoder: ChunkEncoder, *, include_usage: bool = False) -> None:
        self.encoder = encoder
        self.include_usage = include_usage
        self.chunk = lambda _seq, text: encoder.content(text)  # per token: skip a method hop

    def opening(self) -> bytes:
        return self.encoder.role()

    def closing(self, record: RunRecord, chunks: int, error: BaseException | None) -> bytes:
        if error is None and record.status is not RunStatus.SUCCEEDED:
            error = _unfinished(record)
        if error is not None:
            return self.encoder.error(error) + ChunkEncoder.DONE
        end = self.encoder.finish()
        if self.include_usage and record.usage is not None:
            end += self.encoder.usage(record.usage)
        return end + ChunkEncoder.DONE


def chat_stream(host: FlowHost, run: PreparedRun, *, model: str, keepalive: float | None, include_usage: bool = False) -> RunResponse:
    """The streamed answer to `/v1/chat/completions`: `RunResponse` (its disconnect watcher,
    keep-alive comments and cancellation) with OpenAI's framing."""
    encoder = ChunkEncoder(f"chatcmpl-{run.record.id}", model, int(run.record.created))
    return RunResponse(host, run, sse=True, keepalive=keepalive, framing=ChatFraming(encoder, include_usage=include_usage))


def _unfinished(record: RunRecord) -> FlowctlError:
    """A run that ended without a failure raised to us: cancelled from outside, or failed."""
    if record.status is RunStatus.CANCELLED:
        return RunCancelled(f"the run was cancelled ({record.error or 'cancelled'})")
    return RunFailed(record.error or "the run failed")


def completion_renderer(model: str):
    """`RunResponse`'s render hook: a collected run as one `chat.completion`."""

    def render(record: RunRecord, output: Any, error: BaseException | None) -> tuple[int, Any]:
        if error is None and record.status is not RunStatus.SUCCEEDED:
            error = _unfinished(record)
        if error is not None:
            status, failure = openai_error_body(error)
            return (500 if status == 499 else status), failure
        text = "" if output is None else output if isinstance(output, str) else chunk_text(output)
        body: dict[str, Any] = {
            "id": f"chatcmpl-{record.id}",
            "object": "chat.completion",
            "created": int(record.created),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}],
        }
        if record.usage is not None:
            body["usage"] = record.usage.as_openai()
        return 200, body

    return render


# -- the router --------------------------------------------------------------------------------------


def openai_router(ctx: ServerContext) -> Router:
    """`/v1/models`, `/v1/models/{model}` and `/v1/chat/completions`, mounted at the root."""
    host = ctx.host
    started = int(time.time())
    cache: list[Any] = [None, {}]

    def models() -> dict[str, CompiledWorkflow]:
        flow = host.flow
        if cache[0] is not flow:  # a reload swapped the graph
            cache[0], cache[1] = flow, models_of(flow)
        return cache[1]

    def unknown(name: str) -> ModelNotFound:
        return ModelNotFound(name, list(models()))

    @get("/v1/models", sync_to_thread=False)
    def list_models() -> ASGIApp:
        flow = host.flow
        return JSONAnswer(200, {"object": "list", "data": [model_card(name, started, flow) for name in models()]})

    @get("/v1/models/{model:path}", sync_to_thread=False)
    def retrieve_model(model: FromPath[str]) -> ASGIApp:
        name = model.lstrip("/")
        if name not in models():
            return error_answer(unknown(name))
        return JSONAnswer(200, model_card(name, started, host.flow))

    @post("/v1/chat/completions")
    async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
        try:
            raw = await request.body()
            chat, body = parse_request(request.headers.get("content-type"), raw)
            workflow = models().get(chat.model)
            if workflow is None:
                raise unknown(chat.model)
            run = host.prepare(workflow.id, map_inputs(workflow, chat, body))
        except Exception as exc:
            status, error = openai_error_body(exc)
            log_refused("POST", "/v1/chat/completions", status, error["error"]["message"])
            return JSONAnswer(status, error, retry_headers(exc))
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return chat_stream(host, run, model=chat.model, keepalive=ctx.keepalive, include_usage=include_usage)
        return RunResponse(host, run, sse=False, render=completion_renderer(chat.model))

    return Router(path="/", route_handlers=[list_models, retrieve_model, chat_completions], tags=["openai"])


__all__ = [
    "ChatCompletionRequest",
    "ChatFraming",
    "ChunkEncoder",
    "map_inputs",
    "model_name",
    "models_of",
    "openai_router",
]
