"""Map exceptions to HTTP answers. No traceback ever reaches a client.

flowctl's own errors (`FlowctlError`) carry messages written for users, so they are shown
with a status that says what went wrong (422 bad input naming the field, 404 unknown
workflow or run, 503 a service is not ready, 429 the queue is full, 502 an upstream failed).
Anything else is a bug: the client gets `{"error": "internal error", "id": ...}` and the
traceback goes to the server log under the same id.

    status, body, headers = describe(InputError("temperature", "not a number"))
    # 422, {"error": "input 'temperature': not a number", "field": "temperature"}, {}

Other front ends (the OpenAI facade) can reuse `describe` and reshape the body.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import Send

from ..engine.errors import FlowctlError, FlowError, InputError, RunError, ServiceError, UpstreamError, clip
from ..engine.host import Busy, ShuttingDown, WorkflowNotFound

log = logging.getLogger("flowctl.server")


class RunNotFound(FlowctlError):
    def __init__(self, run_id: str) -> None:
        run_id = clip(run_id)
        super().__init__(f"no run '{run_id}'", hint="runs are kept for a while after they finish")
        self.run_id = run_id


class BadRequest(FlowctlError):
    """The request itself is malformed (not JSON, wrong shape): HTTP 400, or 422 with a field."""

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def describe(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, extra headers) for an exception. Logs unexpected ones."""
    if isinstance(exc, InputError):
        return 422, {"error": str(exc), "field": exc.field}, {}
    if isinstance(exc, BadRequest):
        body: dict[str, Any] = {"error": str(exc)}
        if exc.field is not None:
            body["field"] = exc.field
        return exc.status, body, {}
    if isinstance(exc, WorkflowNotFound):
        return 404, {"error": str(exc), "workflow_id": exc.workflow_id}, {}
    if isinstance(exc, RunNotFound):
        return 404, {"error": str(exc), "run_id": exc.run_id}, {}
    if isinstance(exc, Busy):
        return 429, {"error": str(exc)}, {"retry-after": "1"}
    if isinstance(exc, ShuttingDown):
        return 503, {"error": str(exc)}, {"retry-after": "5"}
    if isinstance(exc, ServiceError):
        return 503, {"error": str(exc), "node": exc.node}, {"retry-after": "5"}
    if isinstance(exc, UpstreamError):
        return 502, {"error": str(exc), "node": exc.node}, {}
    if isinstance(exc, RunError):
        return 500, {"error": str(exc), "node": exc.node}, {}
    if isinstance(exc, FlowError):
        return 500, {"error": str(exc)}, {}
    if isinstance(exc, FlowctlError):
        return 500, {"error": str(exc)}, {}
    if isinstance(exc, HTTPException):
        detail = exc.detail or "error"
        body = {"error": detail}
        if exc.status_code == 400 and isinstance(exc.extra, list | dict) and exc.extra:
            body["detail"] = exc.extra
        return exc.status_code, body, dict(exc.headers or {})
    return 500, {"error": "internal error", "id": log_unexpected(exc)}, {}


def log_unexpected(exc: BaseException) -> str:
    """Log a traceback server-side; return the id the client sees."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s: %s", error_id, exc, exc_info=(type(exc), exc, exc.__traceback__))
    return error_id


async def send_refusal(send: Send, path: str, status: int, message: str, *, hint: str, code: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer a request from raw ASGI middleware (before routing): OpenAI's error body under
    `/v1/`, flowctl's elsewhere."""
    if path.startswith("/v1/"):
        body: dict[str, Any] = {"error": {"message": f"{message} ({hint})", "type": "invalid_request_error", "param": None, "code": code}}
    else:
        body = {"error": message, "hint": hint}
    payload = json.dumps(body).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


#: statuses that say the request itself was wrong: each gets one log line (never a traceback)
REFUSED = frozenset({400, 403, 413, 415, 422})


def log_refused(method: str, path: str, status: int, message: str) -> None:
    if status in REFUSED:
        log.warning("refused %s %s (%d): %s", method, clip(path), status, clip(message, 200))


def _handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, body, headers = describe(exc)
    log_refused(request.method, request.url.path, status, str(body.get("error")))
    return Response(body, status_code=status, headers=headers, media_type="application/json")


#: for `Litestar(exception_handlers=...)`
EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    HTTPException: _handler,
    FlowctlError: _handler,
    Exception: _handler,
}

__all__ = ["BadRequest", "EXCEPTION_HANDLERS", "RunNotFound", "describe", "log_refused", "log_unexpected", "send_refusal"]
