"""A request's `completion:`: its answer only acknowledges the job; the result comes by callback.

    completion:
      listener: callbacks        # an http-callback node
      wait_for: ${run.id}        # the identity the callback will carry
      timeout: 300               # seconds, from when the request is sent

The wait is registered before the request goes out (so `wait_for` reads what is known then:
the run, the input, other nodes; not the response), which is why a callback that arrives
before the upstream's own answer is kept. A callback that never comes fails the node after
`timeout`, naming the node and the identity; the request node's `output:` reads the
callback's result as `${result...}` beside `${response...}`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine.errors import UpstreamError
from .base import RunContext
from .callback_waits import CallbackFailed, CallbackTimeout, CallbackWaits, Wait

#: seconds a job waits for its callback unless told (model-compose's polling default)
DEFAULT_TIMEOUT = 300.0


class CallbackCompletion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["callback"] = "callback"
    #: the http-callback node the callback comes to
    listener: str
    #: the identity to wait for, compared as text with the listener's `identify_by`
    wait_for: Any = "__callback__"
    #: seconds from sending the request until the callback must have come
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)


class PendingCallback:
    def __init__(self, ctx: RunContext, waits: CallbackWaits, wait: Wait, timeout: float) -> None:
        self.ctx = ctx
        self.waits = waits
        self.wait = wait
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout

    async def result(self) -> Any:
        """The callback's result; UpstreamError naming the node and the identity when it does
        not come in time, or reports a failure."""
        ctx, identity = self.ctx, self.wait.identity
        try:
            return await self.waits.outcome(self.wait, timeout=max(self.deadline - time.monotonic(), 0.0))
        except CallbackTimeout:
            raise UpstreamError(ctx.node_id, f"no callback for identity '{identity}' came within {self.timeout:g}s (completion.timeout)") from None
        except CallbackFailed as exc:
            raise UpstreamError(ctx.node_id, str(exc)) from None


@contextlib.asynccontextmanager
async def callback_wait(ctx: RunContext, completion: CallbackCompletion) -> AsyncIterator[PendingCallback]:
    """Wait for `completion`'s callback around a request: registered on entry, forgotten on
    exit whatever happens."""
    waits = ctx.callbacks.get(completion.listener)
    if waits is None:
        raise UpstreamError(ctx.node_id, f"'{completion.listener}' is not a running http-callback listener (completion.listener)")
    rendered = ctx.resolve("completion")
    identity = str(rendered["wait_for"]) if isinstance(rendered, dict) else str(completion.wait_for)
    try:
        wait = waits.expect(identity)
    except ValueError as exc:
        raise UpstreamError(ctx.node_id, str(exc)) from None
    try:
        yield PendingCallback(ctx, waits, wait, completion.timeout)
    finally:
        waits.forget(wait)
