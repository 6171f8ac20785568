"""Read timeouts for request heads and bodies (a slowloris guard).

uvicorn times out a kept-alive connection that is idle between requests, but not one that
never sends a request, nor a request head or body that trickles in a byte at a time: a
thousand such connections are held forever. `http_protocol(read_timeout)` is uvicorn's
httptools protocol with two more deadlines, each `read_timeout()` seconds (the flow's
`server.read_timeout`, read per connection, so a reload applies it):

- from the connection opening, or the first byte of a request, to the end of its head;
- from the end of the head to the end of its body.

A request that misses one gets `408 Request Timeout` (when no response has started) and
its connection is closed. A response being streamed is never timed out: once a request is
read, the deadline is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 40\r\nconnection: close\r\n\r\nthe request was not received in time\r\n\r\n"
)


class _ReadTimeoutProtocol(HttpToolsProtocol):
    read_timeout: Callable[[], float]

    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # a request head is due from now
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm()  # now the body is due

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_deadline = self.loop.call_later(type(self).read_timeout(), self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def http_protocol(read_timeout: Callable[[], float]) -> type[HttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)`."""
    return type("FlowctlHttpProtocol", (_ReadTimeoutProtocol,), {"read_timeout": staticmethod(read_timeout)})


__all__ = ["http_protocol"]
