"""One exception tree for everything flowctl reports to a user.

Callers catch at the level they care about, the way httpx keeps `_exceptions.py`:

    FlowctlError                 anything flowctl raises on purpose; `str()` is user-facing
    ├── FlowError                a flow file is wrong: carries file, line, column and a hint
    │   └── FlowErrors           several of them, reported together
    ├── TemplateError            a `${...}` expression is malformed or cannot be evaluated
    │   ├── MissingValueError    a referenced path is not there and no default was given
    │   └── CastError            a value does not convert to the `as` type
    ├── InputError               a run's input is missing or does not cast (HTTP 422)
    ├── RunError                 a per-run node failed: names the node and the cause
    │   └── UpstreamError        an HTTP upstream answered non-2xx, timed out or broke off
    └── ServiceError             a managed service (env-setup, process-start) failed or is down
"""

from __future__ import annotations

from dataclasses import dataclass


class FlowctlError(Exception):
    """Base class. The message is written for the person running flowctl."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message)

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
    """A value did not convert to the type named after `as`."""

    def __init__(self, path: str, value: object, type_name: str) -> None:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"'{path}' is {shown}, which is not a valid {type_name}")
        self.path = path
        self.value = value
        self.type_name = type_name


class InputError(FlowctlError):
    """A run's input is missing a required field or holds a value that does not cast."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"input '{field}': {message}", hint=hint)
        self.field = field


class RunError(FlowctlError):
    """A per-run node failed. `node` names it; the message says why."""

    def __init__(self, node: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"node '{node}': {message}", hint=hint)
        self.node = node


class UpstreamError(RunError):
    """An HTTP upstream answered non-2xx, timed out, or broke off mid-stream."""

    def __init__(self, node: str, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(node, message)
        self.status = status
        self.body = body


class ServiceError(FlowctlError):
    """A managed service failed to set up or start, or went down."""

    def __init__(self, node: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"service '{node}': {message}", hint=hint)
        self.node = node


__all__ = [
    "CastError",
    "clip",
    "FlowError",
    "FlowErrors",
    "FlowctlError",
    "InputError",
    "Location",
    "MissingValueError",
    "RunError",
    "ServiceError",
    "TemplateError",
    "UpstreamError",
]
