"""Run one workflow: every per-run node whose inputs are ready runs at once, and the output
node's chunks go from the upstream socket to the consumer one at a time.

How a run goes (the rules are written out for users in docs/dag.md):

- **Tasks.** Every per-run node that is neither read as a stream, nor a fallback, nor the
  output runs as a task of one `asyncio.TaskGroup` per run (`structured.run_together`). A
  task waits until the task nodes it needs (`CompiledWorkflow.waits`) are over, then decides
  whether to run (skip rules below), runs and keeps its whole output as a value. The first
  failure cancels every other task and is raised, naming its node.
- **Streams.** A node read `as stream/...` is not a task: its one reader opens it lazily when
  the reader starts, so its chunks are pulled by the reader, never buffered. The output
  node is opened the same way by the consumer once the tasks are over (it depends on all of
  them). When the output only forwards one stream (`passthrough`), the consumer iterates that
  stream's node directly: the hot path has no frames of flowctl's own but this generator's.
- **Skips.** A node is skipped when its `when:` does not hold, when it is a switch target
  the switch did not choose, or when every per-run node it depends on was skipped (unless it
  reads each of those only with a `| default`). What reads a skipped node gets its default,
  or null.
- **Fallbacks.** A node with `fallback: F` that fails before producing anything is replaced
  by F: F runs then and there, and whoever reads the node gets F's output.
- **Closing.** Cancelling the consumer (client gone, cancel, shutdown) cancels the task group
  and closes every stream still open: every upstream request of every branch is closed.

With `events=True` the iterator also yields a `NodeEvent` for each node that starts,
finishes, fails, is skipped or cancelled, in the order they happen, between the chunks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import httpx

from ..nodes.balancer import ReplicaPool
from ..nodes.base import Chunks, PauseWaiter, RunContext
from ..nodes.callback_waits import CallbackWaits
from ..nodes.http_transport import StreamingTransport
from ..nodes.registry import create_run_node
from .conditions import holds
from .errors import FlowctlError, InputError, MissingValueError, RunError, TemplateError
from .graph import CompiledFlow, CompiledNode, CompiledWorkflow
from .node_events import CANCELLED, FAILED, FINAL_STATES, FINISHED, SKIPPED, STARTED, NodeEvent
from .structured import run_together
from .templating import SKIPPED as SKIPPED_NODE
from .usage import TokenUsage


def new_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """The upstream client every http-stream node of a process shares: httpx, over
    `nodes.http_transport.StreamingTransport` for plain `http://` (one write per request,
    httptools parsing, an O(1) keep-alive pool) and httpx's own transport for the rest.
    `transport` replaces both (the transport tests run the same client over httpx's own).
    No connection cap: each run holds one connection, and runs are bounded per workflow."""
    if transport is None:
        fallback = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,
        )
        transport = StreamingTransport(fallback=fallback, max_idle_per_origin=64)
    return _UpstreamClient(
        transport=transport,
        timeout=httpx.Timeout(connect=10.0, read=None, write=10.0, pool=30.0),
        trust_env=False,
    )


class _Cookieless(httpx.Cookies):
    """Cookies that are never taken from an answer nor sent with a request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _UpstreamClient(httpx.AsyncClient):
    """One client serves every run: a cookie the upstream sets in answer to one user's run
    must not ride along on the next user's, so it keeps none. (A jar whose policy refuses
    every cookie does the same, but still wraps each answer and its request for
    `http.cookiejar` first: a fifth of the CPU a short run costs.)"""

    _no_cookies = _Cookieless()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the upstream client keeps no cookies")


def run_workflow(
    flow: CompiledFlow,
    workflow: CompiledWorkflow,
    inputs: Mapping[str, Any],
    *,
    run_id: str,
    http: httpx.AsyncClient,
    service_outputs: Mapping[str, Any],
    events: bool = False,
    on_usage: Callable[[TokenUsage], None] | None = None,
    session: str | None = None,
    pools: Mapping[str, ReplicaPool] | None = None,
    pause: PauseWaiter | None = None,
    callbacks: Mapping[str, CallbackWaits] | None = None,
) -> Chunks:
    """The workflow's output chunks (and, with `events`, `NodeEvent`s between them).
    `inputs` must already be validated and cast. Close the iterator to stop the run.
    `on_usage` hears each node's token counts, when its upstream reports them; `pools` are
    the running services' balancing pools (http-stream's `service:`), `callbacks` the running
    callback listeners' waits (http-stream's `completion:`), `pause` how a pause node waits
    for its answer (None: nobody can answer, as under `flowctl run`)."""
    run = WorkflowRun(flow, workflow, inputs, run_id=run_id, http=http, service_outputs=service_outputs, events=events, on_usage=on_usage, session=session, pools=pools, callbacks=callbacks, pause=pause)
    return run.chunks_with_events() if events else run.chunks()


class WorkflowRun:
    """One run's state: the scope its templates read, what each node decided, what is open.

    `run_workflow` is the plain way to use it. A consumer that wants no frame of ours
    between itself and the output node (the server's per-token loop) drives it by hand:

        run = WorkflowRun(flow, workflow, inputs, run_id=..., http=..., service_outputs=...)
        try:
            chunks = await run.open()          # the tasks run; None when the output is skipped
            try:
                async for chunk in chunks or ():
                    ...
            except Exception as exc:
                raise run.named(exc) from exc  # a RunError naming the node
        finally:
            await run.close()
    """

    def __init__(
        self,
        flow: CompiledFlow,
        workflow: CompiledWorkflow,
        inputs: Mapping[str, Any],
        *,
        run_id: str,
        http: httpx.AsyncClient,
        service_outputs: Mapping[str, Any],
        events: bool = False,
        on_usage: Callable[[TokenUsage], None] | None = None,
        session: str | None = None,
        pools: Mapping[str, ReplicaPool] | None = None,
        pause: PauseWaiter | None = None,
        callbacks: Mapping[str, CallbackWaits] | None = None,
    ) -> None:
        self.flow = flow
        self.pause = pause
        self.pools: Mapping[str, ReplicaPool] = pools if pools is not None else {}
        self.callbacks: Mapping[str, CallbackWaits] = callbacks if callbacks is not None else {}
        self.on_usage = on_usage
        self.workflow = workflow
        self.nodes = flow.nodes
        self.run_id = run_id
        self.http = http
        self.in_run = frozenset(workflow.run_nodes)
        self.scope_nodes: dict[str, Any] = {sid: {"output": service_outputs.get(sid)} for sid in workflow.services}
        self.base_scope = {
            "input": dict(inputs),
            "env": os.environ,
            "run": {"id": run_id, "time": time.time(), "workflow": workflow.id, "session": session},
            "nodes": self.scope_nodes,
        }
        #: task nodes that are over (finished or skipped), for the tasks that wait on them
        self.over = {node_id: asyncio.Event() for node_id in workflow.tasks}
        #: node -> why it was skipped (None: it runs); a node is decided once
        self.skipped: dict[str, str | None] = {}
        #: switch -> the targets it chose
        self.chosen: dict[str, frozenset[str]] = {}
        #: every node iterator opened, closed at the end of the run whatever happened
        self.opened: list[Chunks] = []
        self.t0 = time.monotonic()
        self.events: collections.deque[NodeEvent] | None = collections.deque() if events else None
        self.started_at: dict[str, float] = {}
        self.wake: asyncio.Event | None = None
        #: who an error while the output is read is named after
        self.owner = workflow.output_node

    # -- the run, as the consumer sees it ---------------------------------------------------

    async def open(self) -> Chunks | None:
        """Run the tasks, then open the output: its chunks (None when it is skipped).
        Iterating them pulls straight from the output node (or the one stream it forwards)."""
        if self.workflow.tasks:
            await self.run_tasks()
        output, self.owner = self.open_output()
        return output

    def named(self, exc: BaseException) -> RunError | InputError:
        """An error raised while iterating `open()`'s chunks, as a RunError naming its node
        (a bug, any other exception, is raised as it is)."""
        return _named(self.owner, exc)

    async def chunks(self) -> Chunks:
        try:
            output = await self.open()
            if output is None:
                return
            try:
                async for chunk in output:
                    yield chunk
            except Exception as exc:
                raise self.named(exc) from exc
        finally:
            await self.close()

    async def chunks_with_events(self) -> Chunks:
        events = self.events
        assert events is not None
        try:
            if self.workflow.tasks:
                async for event in self._tasks_reporting():
                    yield event
            output, owner = self.open_output()
            if output is not None:
                try:
                    async for chunk in output:
                        while events:
                            yield events.popleft()
                        yield chunk
                except Exception as exc:
                    error = _named(owner, exc)
                    while events:
                        yield events.popleft()
                    raise error from exc
            while events:
                yield events.popleft()
        finally:
            await self.close()

    async def _tasks_reporting(self) -> AsyncGenerator[NodeEvent, None]:
        """Run the tasks in a task of their own, handing on their events as they happen."""
        events = self.events
        assert events is not None
        loop = asyncio.get_running_loop()
        wake = self.wake = asyncio.Event()
        driver = loop.create_task(self.run_tasks(), name=f"flowctl-run-{self.run_id}")
        try:
            while True:
                while events:
                    yield events.popleft()
                if driver.done():
                    break
                wake.clear()
                woken = loop.create_task(wake.wait())
                try:
                    await asyncio.wait((driver, woken), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
            error = driver.exception()
            if error is not None:
                while events:
                    yield events.popleft()
                raise error
        finally:
            if not driver.done():
                driver.cancel()  # its nodes close their upstream requests as they unwind
                await asyncio.wait((driver,))

    async def run_tasks(self) -> None:
        await run_together(self._task(node_id) for node_id in self.workflow.tasks)

    def open_output(self) -> tuple[Chunks | None, str]:
        """The output node's chunks (None when it is skipped), and who to name in an error."""
        output = self.workflow.output_node
        forwarded = self.workflow.passthrough
        if forwarded is not None and self.events is None:
            # the output only forwards `forwarded`'s stream: hand that stream on unwrapped
            if not self.prepare(output, open_streams=False) or not self.prepare(forwarded):
                return None, output
            return self.open_node(forwarded, guard=False), forwarded
        if not self.prepare(output):
            return None, output
        return self.open_node(output), output

    async def close(self) -> None:
        for chunks in reversed(self.opened):
            with contextlib.suppress(RuntimeError):  # one still running is being closed by its reader
                await chunks.aclose()

    # -- tasks --------------------------------------------------------------------------------

    async def _task(self, node_id: str) -> None:
        for need in self.workflow.waits.get(node_id, ()):
            await self.over[need].wait()
        if self.prepare(node_id):
            value = await _collect(self.open_node(node_id))
            entry = self.scope_nodes.get(node_id)
            if isinstance(entry, dict) and "error" in entry:  # it fell back: keep why
                self.scope_nodes[node_id] = {"output": value, "error": entry["error"]}
            else:
                self.scope_nodes[node_id] = {"output": value}
        self.over[node_id].set()

    # -- deciding and opening nodes -----------------------------------------------------------

    def prepare(self, node_id: str, *, open_streams: bool = True) -> bool:
        """Decide whether `node_id` runs; if it does, open the streams it reads (into the
        scope, lazily: nothing is read until the node pulls). False when it is skipped."""
        if self.decide(node_id) is not None:
            self._drop_streams(node_id)
            return False
        if open_streams:
            for up in self.nodes[node_id].stream_inputs:
                if up in self.in_run and self.prepare(up):
                    self.scope_nodes[up] = {"output": self.open_node(up)}
        return True

    def decide(self, node_id: str) -> str | None:
        """Why `node_id` is skipped, or None when it runs. Decided once per run; the nodes it
        reads as streams are decided first (their being skipped counts)."""
        if node_id in self.skipped:
            return self.skipped[node_id]
        node = self.nodes[node_id]
        for up in node.stream_inputs:
            if up in self.in_run:
                self.decide(up)
        reason = self._skip_rule(node)
        if reason is None and "when" in node.fields:
            try:
                condition = node.fields["when"].render(self.scope())
            except TemplateError as exc:
                raise RunError(node_id, f"`when`: {exc.message}", hint=exc.hint) from None
            if not holds(condition):
                reason = "`when` does not hold"
        self._set_skipped(node_id, reason)
        return reason

    def _skip_rule(self, node: CompiledNode) -> str | None:
        if node.routed_by:
            ran = [switch for switch in node.routed_by if not self.skipped.get(switch)]
            if not ran:
                return "its switch was skipped"
            if not any(node.id in self.chosen.get(switch, ()) for switch in ran):
                return f"not chosen by switch '{ran[0]}'"
            return None
        ups = [up for up in node.upstream if up in self.in_run and self.nodes[up].fallback != node.id]
        if ups and all(self.skipped.get(up) for up in ups) and not all(up in node.optional_inputs for up in ups):
            return "every node it depends on was skipped"
        return None

    def _set_skipped(self, node_id: str, reason: str | None) -> None:
        self.skipped[node_id] = reason
        if reason is not None:
            self.scope_nodes[node_id] = SKIPPED_NODE
            self.emit(node_id, SKIPPED, reason=reason)

    def _drop_streams(self, reader: str) -> None:
        """A skipped node's streams will never be read: they are skipped too."""
        for up in self.nodes[reader].stream_inputs:
            if up in self.in_run and self.skipped.get(up, "") is None:
                self._set_skipped(up, f"its reader '{reader}' did not run")
                self._drop_streams(up)

    def scope(self) -> dict[str, Any]:
        return dict(self.base_scope)

    def open_node(self, node_id: str, *, guard: bool = True) -> Chunks:
        """Start `node_id` (lazily: its code runs on the first pull) with its wrappers: errors
        named after it (`guard`), events, and its fallback."""
        node = self.nodes[node_id]
        chunks = self._start(node_id, node, self.scope())
        if guard:
            chunks = _guarded(node_id, chunks)
        if self.events is not None:
            chunks = self._observed(node_id, chunks)
        if node.fallback is not None:
            chunks = self._with_fallback(node_id, node.fallback, chunks)
        self.opened.append(chunks)
        return chunks

    def _start(self, node_id: str, node: CompiledNode, scope: dict[str, Any]) -> Chunks:
        def resolve(field: str, extra: Mapping[str, Any] | None = None) -> Any:
            if extra:
                scope.update(extra)
            compiled = node.fields.get(field)
            if compiled is None:
                return getattr(node.spec, field)
            return compiled.render(scope)

        ctx = RunContext(node_id=node_id, run_id=self.run_id, resolve=resolve, http=self.http, fields=node.fields, scope=scope, pools=self.pools, callbacks=self.callbacks)
        if self.events is not None:
            ctx.report = lambda state, **details: self.emit(node_id, state, details=details)
        if self.on_usage is not None:
            ctx.usage = self.on_usage
        if node.spec.route_targets():
            ctx.choose = lambda targets: self.chosen.__setitem__(node_id, frozenset(targets))
        ctx.pause = self.pause
        if node.inner is not None:
            inner = node.inner
            ctx.run_item = lambda extra: self._run_item(node_id, inner, extra, scope)
        return create_run_node(node.spec).run(ctx)

    async def _run_item(self, map_id: str, inner: CompiledNode, extra: Mapping[str, Any], outer: Mapping[str, Any]) -> Any:
        """One item of a map: the per-item node with `item` and `index` in scope, collected.
        `outer` is its owner's scope (a body inside a loop's body reads `${loop...}` too)."""
        scope = dict(outer)
        scope.update(extra)
        if "when" in inner.fields:
            try:
                condition = inner.fields["when"].render(scope)
            except TemplateError as exc:
                raise RunError(map_id, f"`when`: {exc.message}", hint=exc.hint) from None
            if not holds(condition):
                return None
        return await _collect(_guarded(map_id, self._start(map_id, inner, scope)))

    async def _with_fallback(self, node_id: str, fallback: str, chunks: Chunks) -> Chunks:
        """`chunks`, or, if they fail before the first one, the fallback node's in their place."""
        produced = False
        try:
            async for chunk in chunks:
                produced = True
                yield chunk
            return
        except Exception as exc:
            error = _named(node_id, exc)
            if produced or isinstance(error, InputError):  # a bad input is the client's to fix
                raise
        finally:
            await chunks.aclose()
        self.scope_nodes[node_id] = {"output": None, "error": {"node": node_id, "message": error.reason, "status": getattr(error, "status", None)}}
        if not self.prepare(fallback):
            raise error
        async for chunk in self.open_node(fallback):
            yield chunk

    # -- events -------------------------------------------------------------------------------

    def emit(self, node_id: str, state: str, *, reason: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        if self.events is None:
            return
        now = time.monotonic()
        elapsed = None
        if state == STARTED:
            self.started_at[node_id] = now
        elif state in FINAL_STATES and node_id in self.started_at:
            elapsed = round((now - self.started_at[node_id]) * 1000, 1)
        self.events.append(NodeEvent(node_id, state, at_ms=round((now - self.t0) * 1000, 1), elapsed_ms=elapsed, reason=reason, details=details or {}))
        if self.wake is not None:
            self.wake.set()

    async def _observed(self, node_id: str, chunks: Chunks) -> Chunks:
        self.emit(node_id, STARTED)
        try:
            async for chunk in chunks:
                yield chunk
        except (GeneratorExit, asyncio.CancelledError):
            self.emit(node_id, CANCELLED)
            raise
        except Exception as exc:
            error = _named(node_id, exc)
            culprit = getattr(error, "node", node_id)
            if culprit == node_id:
                self.emit(node_id, FAILED, reason=getattr(error, "reason", str(error)))
            else:
                self.emit(node_id, CANCELLED, reason=f"node '{culprit}' failed")
            raise
        else:
            self.emit(node_id, FINISHED)
        finally:
            await chunks.aclose()


def _named(node_id: str, exc: BaseException) -> RunError | InputError:
    """`exc` as the error a user reads: a node's own errors name it already (and an input
    that made a node's request invalid is the input's fault); anything else it raised is
    named after `node_id`. A bug (any other exception) is passed on as it is."""
    if isinstance(exc, (RunError, InputError)):
        return exc
    if isinstance(exc, MissingValueError) and exc.path.startswith("input."):
        # an optional input this node needed after all (its `when:` held): the client's to give
        name = re.split(r"[.\[]", exc.path[len("input.") :], maxsplit=1)[0]
        return InputError(name, f"is needed by node '{node_id}' but was not given", hint=exc.hint)
    if isinstance(exc, TemplateError):
        return RunError(node_id, exc.message, hint=exc.hint)
    if isinstance(exc, FlowctlError):
        return RunError(node_id, str(exc))
    if isinstance(exc, (OSError, ValueError, TypeError, KeyError)):
        return RunError(node_id, f"{type(exc).__name__}: {exc}")
    raise exc


async def _guarded(node_id: str, chunks: Chunks) -> Chunks:
    """Name the node in any error it raises, and close it whatever happens."""
    try:
        async for chunk in chunks:
            yield chunk
    except (RunError, InputError):  # already names the node (or the input at fault)
        raise
    except Exception as exc:
        raise _named(node_id, exc) from exc
    finally:
        await chunks.aclose()


async def _collect(chunks: Chunks) -> Any:
    values = [chunk async for chunk in chunks]
    if len(values) == 1:
        return values[0]
    if all(isinstance(value, str) for value in values):
        return "".join(values)
    return values


def chunk_text(chunk: Any) -> str:
    """How a chunk reads as text: strings as they are, everything else as compact JSON."""
    if isinstance(chunk, str):
        return chunk
    return json.dumps(chunk, separators=(",", ":"), ensure_ascii=False)
