"""Errors as HTTP answers, in flowctl's shape and in OpenAI's. No traceback reaches a client.

flowctl's own errors (`engine/errors.py`) carry messages written for users and say on their
class what they mean to HTTP (`status_code`, `retry_after`, `code`, `param`), so this module
reads attributes, never a ladder of types. Anything else is a bug: the client gets
`{"error": "internal error", "id": ...}` and the traceback goes to the server log under the
same id.

    >>> from flowctl.engine.errors import InputError
    >>> describe(InputError("temperature", "not a number"))
    (422, {'error': "input 'temperature': not a number", 'field': 'temperature'}, {})
    >>> openai_error_body(InputError("temperature", "not a number"))[1]["error"]["code"]
    'invalid_input'
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import Send

from ..engine.errors import FlowctlError, clip

log = logging.getLogger("flowctl.server")


def describe(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, extra headers) for an exception. Logs unexpected ones."""
    if isinstance(exc, FlowctlError):
        headers = {"retry-after": str(exc.retry_after)} if exc.retry_after is not None else {}
        return exc.status_code, {"error": str(exc), **exc.details()}, headers
    if isinstance(exc, HTTPException):  # Litestar's own (413 body too large, ...)
        body: dict[str, Any] = {"error": exc.detail or "error"}
        if exc.status_code == 400 and isinstance(exc.extra, list | dict) and exc.extra:
            body["detail"] = exc.extra
        return exc.status_code, body, dict(exc.headers or {})
    return 500, {"error": "internal error", "id": log_unexpected(exc)}, {}


#: OpenAI's `error.code` for Litestar's own HTTP errors (flowctl's errors carry their `code`)
_HTTP_CODES = {413: "request_too_large"}


def openai_error_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error in OpenAI's shape: `{"error": {"message", "type", "param",
    "code"}}`. OpenAI answers every invalid request with 400, so flowctl's 422 becomes 400."""
    status, body, _ = describe(exc)
    if isinstance(exc, FlowctlError):
        message, param, code = str(exc), exc.param, exc.code
    elif isinstance(exc, HTTPException):
        message, param, code = str(body["error"]), None, _HTTP_CODES.get(status, "invalid_request" if status < 500 else None)
    else:
        message, param, code = f"internal error (id {body['id']})", None, None
    if status == 422:
        status = 400
    return status, {"error": {"message": message, "type": openai_error_type(status), "param": param, "code": code}}


def openai_error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status >= 500 or status == 499:
        return "server_error"
    return "invalid_request_error"


def retry_headers(exc: BaseException) -> tuple[tuple[bytes, bytes], ...]:
    """`Retry-After` for an error that says when to come back, as raw ASGI headers."""
    after = exc.retry_after if isinstance(exc, FlowctlError) else None
    return ((b"retry-after", str(after).encode()),) if after is not None else ()


def log_unexpected(exc: BaseException) -> str:
    """Log a traceback server-side; return the id the client sees."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s: %s", error_id, exc, exc_info=(type(exc), exc, exc.__traceback__))
    return error_id


async def send_refusal(send: Send, path: str, error: FlowctlError, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Answer a request from raw ASGI middleware (before routing) with `error`: OpenAI's error
    body under `/v1/`, flowctl's elsewhere."""
    if path.startswith("/v1/"):
        status, body = openai_error_body(error)
    else:
        status, body, _ = describe(error)
    payload = json.dumps(body).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()), *retry_headers(error), *headers]
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

__all__ = ["EXCEPTION_HANDLERS", "describe", "log_refused", "log_unexpected", "openai_error_body", "openai_error_type", "retry_headers", "send_refusal"]
