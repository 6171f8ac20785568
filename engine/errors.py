"""One exception tree for everything flowctl reports to a user.

Callers catch at the level they care about, the way httpx keeps `_exceptions.py`:

    FlowctlError                 anything flowctl raises on purpose; `str()` is user-facing
    ├── FlowError                a flow file is wrong: carries file, line, column and a hint
    │   └── FlowErrors           several of them, reported together
    ├── TemplateError            a `${...}` expression is malformed or cannot be evaluated
    │   ├── MissingValueError    a referenced path is not there and no default was given
    │   └── CastError            a value does not convert to the `as` type
    ├── InputError               a run's input is missing or does not cast
    ├── UsageError               a command's option, environment variable or file is wrong
    ├── BadRequest               a request is malformed (not JSON, wrong shape)
    ├── Unauthorized             no API key, or the wrong one
    ├── HostNotAllowed           a `Host:` this server does not answer for
    ├── WorkflowNotFound         no workflow by that id
    │   └── ModelNotFound        ... asked for as an OpenAI model
    ├── RunNotFound              no run by that id (any more)
    ├── NotPaused                a resume for a run that is not waiting for an answer there
    ├── ServiceNotFound          no service by that name in the flow
    ├── Busy                     the workflow's queue is full
    ├── ShuttingDown             flowctl is stopping and takes no new runs
    ├── RunError                 a per-run node failed: names the node and the cause
    │   └── UpstreamError        an HTTP upstream answered non-2xx, timed out or broke off
    ├── RunFailed                a run ended failed; the message is why (run record's error)
    ├── RunCancelled             the run was cancelled before it finished
    └── ServiceError             a managed service (env-setup, process-start) failed or is down

What an error means outside Python is said once, on its class, the way Litestar's
`http_exceptions.py` does it: `status_code` (HTTP), `exit_code` (the shell), `retry_after`
(seconds, for a `Retry-After` header), `code` (a short machine-readable word; the OpenAI
facade's `error.code`), and `param` (the request field it is about, if any). The server, the
OpenAI facade and the CLI read these attributes; none of them keeps its own table.

    >>> error = Busy("workflow 'chat' has 256 runs waiting already")
    >>> error.status_code, error.exit_code, error.retry_after, error.code
    (429, <ExitCode.RUN: 3>, 1, 'rate_limit_exceeded')
    >>> InputError("temperature", "not a number").details()
    {'field': 'temperature'}
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar


class ExitCode(enum.IntEnum):
    """`flowctl`'s exit statuses (the only place they are defined)."""

    OK = 0
    FLOW = 1  # the flow file is invalid
    USAGE = 2  # bad usage or bad input
    RUN = 3  # a run failed
    SERVICE = 4  # a service failed to set up or start
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class FlowctlError(Exception):
    """Base class. The message is written for the person running flowctl."""

    #: the HTTP status this error is answered with
    status_code: int = 500
    #: the exit status of a `flowctl` command that ends with it
    exit_code: ClassVar[ExitCode] = ExitCode.RUN
    #: seconds a client should wait before trying again (a `Retry-After` header), if any
    retry_after: ClassVar[int | None] = None
    #: a short machine-readable word for it (the OpenAI facade's `error.code`)
    code: ClassVar[str | None] = None
    #: the request field it is about (the OpenAI facade's `error.param`)
    param: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

    def details(self) -> dict[str, Any]:
        """Fields beside the message in an HTTP error body (`field`, `node`, ...)."""
        return {}

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


def clip(text: str, limit: int = 80) -> str:
    """`text` for a message: whole when short, else its start and `...` (a request can send
    a 10,000-character id; echoing it back whole helps nobody)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class FlowError(FlowctlError):
    """A problem in a flow file, reported as `FILE:LINE:COL: message`."""

    exit_code = ExitCode.FLOW

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.location = location

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.location}: {text}" if self.location else text


class FlowErrors(FlowError):
    """Several flow errors found in one pass; each is reported on its own line."""

    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = sorted(errors, key=_error_sort_key)
        first = self.errors[0]
        super().__init__(first.message, location=first.location, hint=first.hint)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def _error_sort_key(error: FlowError) -> tuple[str, int, int]:
    loc = error.location
    return (loc.file, loc.line, loc.column) if loc else ("", 0, 0)


class TemplateError(FlowctlError):
    """A `${...}` expression that cannot be parsed or evaluated."""

    def __init__(self, message: str, *, template: str | None = None, offset: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.template = template
        self.offset = offset


class MissingValueError(TemplateError):
    """A template referenced a path that is not there, and gave no default."""

    def __init__(self, path: str, *, hint: str | None = None) -> None:
        super().__init__(f"'{path}' is not set", hint=hint)
        self.path = path


class CastError(TemplateError):
    """A value did not convert to the type named after `as`. `expected` says what would have
    (`one of: low, high` for a select); by default `a valid <type>`."""

    def __init__(self, path: str, value: object, type_name: str, *, expected: str | None = None) -> None:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        self.expected = expected or f"a valid {type_name}"
        super().__init__(f"'{path}' is {shown}, which is not {self.expected}")
        self.path = path
        self.value = value
        self.type_name = type_name


class InputError(FlowctlError):
    """A run's input is missing a required field or holds a value that does not cast."""

    status_code = 422
    exit_code = ExitCode.USAGE
    code = "invalid_input"

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"input '{field}': {message}", hint=hint)
        self.field = field
        self.param = field

    def details(self) -> dict[str, Any]:
        return {"field": self.field}


class UsageError(FlowctlError):
    """A command was used wrongly: an option, an environment variable or a file it names
    (`flowctl` exits 2 with the message)."""

    status_code = 400
    exit_code = ExitCode.USAGE


class BadRequest(FlowctlError):
    """The request itself is malformed (not JSON, wrong shape): HTTP 400, or 422 when it
    names a field whose value is wrong."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.param = field
        self.status_code = status

    def details(self) -> dict[str, Any]:
        return {"field": self.field} if self.field is not None else {}


class Unauthorized(FlowctlError):
    """No API key, or the wrong one, where `FLOWCTL_API_KEY` asks for one."""

    status_code = 401
    exit_code = ExitCode.USAGE
    code = "invalid_api_key"


class HostNotAllowed(FlowctlError):
    """A request named a host (`Host:` header) this server does not answer for (DNS rebinding)."""

    status_code = 403
    exit_code = ExitCode.USAGE
    code = "host_not_allowed"


class WorkflowNotFound(FlowctlError):
    """No workflow by that id in the flow being served."""

    status_code = 404
    exit_code = ExitCode.USAGE

    def __init__(self, workflow_id: str, known: list[str]) -> None:
        workflow_id = clip(workflow_id)
        super().__init__(f"no workflow '{workflow_id}'", hint="workflows: " + (", ".join(known) or "none"))
        self.workflow_id = workflow_id

    def details(self) -> dict[str, Any]:
        return {"workflow_id": self.workflow_id}


class ModelNotFound(WorkflowNotFound):
    """The OpenAI facade was asked for a model no workflow answers as."""

    code = "model_not_found"

    def __init__(self, model: str, known: list[str]) -> None:
        model = clip(model)
        FlowctlError.__init__(self, f"The model `{model}` does not exist (models: {', '.join(known) or 'none'})")
        self.workflow_id = model
        self.param = "model"


class RunNotFound(FlowctlError):
    status_code = 404
    exit_code = ExitCode.USAGE

    def __init__(self, run_id: str) -> None:
        run_id = clip(run_id)
        super().__init__(f"no run '{run_id}'", hint="runs are kept for a while after they finish")
        self.run_id = run_id

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class NotPaused(FlowctlError):
    """A resume the run cannot take: it is not paused (or not at that node or job), or the
    pause takes no answer and one was given."""

    status_code = 409
    exit_code = ExitCode.USAGE
    code = "not_paused"

    def __init__(self, run_id: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.run_id = clip(run_id)

    def details(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


class ServiceNotFound(FlowctlError):
    """No service by that name in the flow (asked for its log, say)."""

    status_code = 404
    exit_code = ExitCode.USAGE
    code = "not_found"

    def __init__(self, node: str, *, hint: str | None = None) -> None:
        node = clip(node)
        super().__init__(f"no service '{node}' in this flow", hint=hint)
        self.node = node

    def details(self) -> dict[str, Any]:
        return {"node": self.node}


class Busy(FlowctlError):
    """Too many runs of a workflow are waiting already."""

    status_code = 429
    retry_after = 1
    code = "rate_limit_exceeded"


class ShuttingDown(FlowctlError):
    """The host is stopping and takes no new runs."""

    status_code = 503
    retry_after = 5
    code = "service_unavailable"


class RunError(FlowctlError):
    """A per-run node failed. `node` names it; the message says why."""

    def __init__(self, node: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"node '{node}': {message}", hint=hint)
        self.node = node
        #: the message without the node's name
        self.reason = message

    def details(self) -> dict[str, Any]:
        return {"node": self.node}


class UpstreamError(RunError):
    """An HTTP upstream answered non-2xx, timed out, or broke off mid-stream."""

    status_code = 502
    code = "upstream_error"

    def __init__(self, node: str, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(node, message)
        self.status = status
        self.body = body


class RunFailed(FlowctlError):
    """A run that ended failed, told after the fact (the message is the run record's error)."""

    code = "run_failed"


class RunCancelled(FlowctlError):
    """A run was cancelled (or its client went away) before it finished. HTTP 499, nginx's
    "client closed request", where an answer is still owed (a collected run's body)."""

    status_code = 499
    exit_code = ExitCode.INTERRUPTED
    code = "cancelled"


class ServiceError(FlowctlError):
    """A managed service failed to set up or start, or went down."""

    status_code = 503
    exit_code = ExitCode.SERVICE
    retry_after = 5
    code = "service_unavailable"

    def __init__(self, node: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"service '{node}': {message}", hint=hint)
        self.node = node

    def details(self) -> dict[str, Any]:
        return {"node": self.node}


__all__ = [
    "BadRequest",
    "Busy",
    "CastError",
    "ExitCode",
    "clip",
    "FlowError",
    "FlowErrors",
    "FlowctlError",
    "HostNotAllowed",
    "InputError",
    "Location",
    "MissingValueError",
    "ModelNotFound",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunNotFound",
    "ServiceError",
    "ServiceNotFound",
    "ShuttingDown",
    "TemplateError",
    "Unauthorized",
    "UpstreamError",
    "UsageError",
    "WorkflowNotFound",
]
