"""Readiness probes of a managed server: an HTTP GET (or a POST with a JSON body, such as a
1-token generation) expecting 2xx (or a given status), a TCP connect, or a line of the
process's own output matching a pattern (`log:`, for a process that serves nothing here, such
as a tunnel that prints its public URL; `process_start` watches its lines). One probe is one
attempt; `process_start` repeats it until it passes, the process exits, or
`readiness.timeout` runs out.

    >>> spec = ReadinessSpec(http="v1/models")
    >>> spec.http, describe_probe(spec, "0.0.0.0", 8000)
    ('/v1/models', 'GET http://127.0.0.1:8000/v1/models')
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ReadinessSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: HTTP path probed with GET, e.g. /v1/models; `tcp: true` probes a TCP connect instead
    http: str | None = None
    #: POST sends `body` as JSON: a probe that asks for a 1-token generation is passed only by
    #: a server that can generate, not by one that has merely loaded
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, Any] | list[Any] | None = None
    #: seconds one probe may take (a generation takes longer than a GET)
    request_timeout: float = Field(default=2.0, gt=0)
    #: expected HTTP status; default any 2xx
    status: int | None = None
    tcp: bool = False
    #: a regular expression: ready once a line of the process's output matches it (searched,
    #: not anchored); its named groups are the node's `output.matched`
    log: str | None = None
    #: seconds to wait for readiness before failing the node
    timeout: float = Field(default=600.0, gt=0)
    #: seconds between probes
    interval: float = Field(default=0.25, gt=0)
    #: seconds between progress lines (with the process's latest output) while waiting
    progress: float = Field(default=5.0, gt=0)

    @field_validator("http")
    @classmethod
    def _leading_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            value = "/" + value
        return value

    @field_validator("log")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"`log:` is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _body_needs_post(self) -> ReadinessSpec:
        if self.body is not None and self.method != "POST":
            raise ValueError("a readiness `body` is sent with `method: POST`; add it")
        if self.method != "GET" and not self.http:
            raise ValueError(f"`method: {self.method}` needs an `http:` path to send it to")
        if self.log is not None and (self.http or self.tcp):
            raise ValueError("`log:` is a readiness of its own: leave out `http:`/`tcp:`")
        return self

    @property
    def probes(self) -> bool:
        """False when readiness is only "the process started"."""
        return bool(self.http or self.tcp)


async def probe(spec: ReadinessSpec, host: str, port: int | None, client: httpx.AsyncClient) -> bool:
    """One attempt: True when the server at host:port answers as `spec` expects."""
    target = probe_host(host)
    if spec.http:
        try:
            url = f"http://{url_host(target)}:{port}{spec.http}"
            response = await client.request(spec.method, url, json=spec.body, timeout=spec.request_timeout)
        except httpx.HTTPError:
            return False
        if spec.status is not None:
            return response.status_code == spec.status
        return 200 <= response.status_code < 300
    if spec.tcp:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout=2.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return True
    return True


def describe_probe(spec: ReadinessSpec, host: str, port: int | None) -> str:
    """The probe in words, for progress lines and errors."""
    target = url_host(probe_host(host))
    if spec.http:
        expected = f" = {spec.status}" if spec.status is not None else ""
        return f"{spec.method} http://{target}:{port}{spec.http}{expected}"
    if spec.tcp:
        return f"TCP {target}:{port}"
    if spec.log is not None:
        return f"an output line matching /{spec.log}/"
    return "process start"


def probe_host(host: str) -> str:
    """Where to probe a server bound to `host`: the wildcard is reached on loopback."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_host(host: str) -> str:
    """`host` as it goes in a URL (IPv6 in brackets)."""
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


__all__ = ["ReadinessSpec", "describe_probe", "probe", "probe_host", "url_host"]
