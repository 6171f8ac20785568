"""Hot reload: watch a flow file and swap the served graph when a save makes it different.

On each save (after a quiet window, so a burst of events is one save) the file is read,
skipped when its bytes are unchanged, then parsed, validated and compiled. An invalid file
keeps the last good graph serving; the error goes to the log as `FILE:LINE:COL: message` and
to `host.reload_error` (shown on `/ready` and in the UI). A valid one is swapped in by
`FlowHost.reload`, which restarts only the services whose spec changed.

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_flow(host, "flows/chat.yml", stop=stop))
    ...
    stop.set()
    await watcher          # returns within a few tens of ms; then `await host.stop()`

The flow file's *directory* is watched (not recursively), so saves that write a temp file and
rename it over the flow, or move the flow away and write a new one, are seen like in-place
writes. A file that is missing or unreadable for less than the quiet window is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import watchfiles

from .errors import FlowError, FlowErrors, Location
from .flow import load_flow_text
from .loader import MAX_FLOW_BYTES, check_size

if TYPE_CHECKING:
    from .graph import CompiledFlow
    from .host import FlowHost

__all__ = ["watch_flow"]

_MISSING = "missing"


def _stderr_log(line: str) -> None:
    print(f"flowctl: {line}", file=sys.stderr, flush=True)


async def watch_flow(
    host: FlowHost,
    path: str | Path,
    *,
    stop: asyncio.Event,
    log: Callable[[str], None] = _stderr_log,
    debounce_ms: int = 50,
) -> None:
    """Reload `host` from `path` on every save until `stop` is set (or the task is cancelled).

    One line to `log` per reload: `reloaded FILE in 12 ms (restarted: vllm)` or
    `reload failed, still serving the last good flow: FILE:LINE:COL: message` (the default
    `log`, like `flowctl up`'s, prints it to stderr as `flowctl: <line>`).
    Never raises for a bad file or a failed service start: it reports them and keeps watching.
    Stop it before `host.stop()` — a reload that is starting services holds the supervisor.
    """
    watcher = _Watcher(host, Path(path), log, debounce_ms / 1000)
    await watcher.run(stop)


class _Watcher:
    def __init__(self, host: FlowHost, path: Path, log: Callable[[str], None], quiet: float) -> None:
        self.host = host
        self.path = path
        self.name = str(path)
        self.log = log
        self.quiet = max(quiet, 0.005)
        # match events on the path as given and, for a symlinked flow, on its target too
        self.targets = {os.path.abspath(path), os.path.realpath(path)}
        self.dirs = sorted({os.path.dirname(t) for t in self.targets})
        self.last_digest: str | None = None
        self.events: asyncio.Queue[None] = asyncio.Queue()
        #: reloads applied in the background (one restarting services, newer ones queued)
        self.applying: list[tuple[asyncio.Task[None], dict[str, str]]] = []
        self.stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        halt = asyncio.Event()  # stops the watch thread (also when this task is cancelled)
        step = int(min(50, max(5, self.quiet * 500)))
        # watchfiles groups changes until none came for `step` ms; the quiet window in
        # `_settle` then makes a burst (or a long write) one save.
        changes = watchfiles.awatch(
            *self.dirs,
            watch_filter=self._wanted,
            step=step,
            debounce=max(2000, step * 4),
            stop_event=halt,
            recursive=False,
            rust_timeout=1000,
        )
        first = asyncio.ensure_future(_first(changes))
        producer: asyncio.Task[None] | None = None
        stopper = asyncio.create_task(stop.wait())
        try:
            # the generator sets up its watches before its first await: once it has had one
            # step, every later change to the file is seen
            await asyncio.sleep(0)
            producer = asyncio.create_task(self._produce(changes, first), name=f"watch:{self.name}")
            await self._catch_up()
            while not stop.is_set():
                got = asyncio.create_task(self.events.get())
                done, _ = await asyncio.wait({got, stopper, producer}, return_when=asyncio.FIRST_COMPLETED)
                if got not in done:
                    got.cancel()
                    if producer in done:
                        producer.result()  # the watcher broke: raise why
                    break
                await self._settle(stop)
                if not stop.is_set():
                    await self._check(stop)
        finally:
            self.stopping = True
            halt.set()
            stopper.cancel()
            for task, _ in self.applying:
                task.cancel()
            waits: list[asyncio.Future[Any]] = [t for t, _ in self.applying]
            waits.append(producer if producer is not None else first)
            for waiting in waits:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiting
            if producer is None:
                await changes.aclose()
            self.applying.clear()

    async def _produce(self, changes: AsyncGenerator[set[tuple[watchfiles.Change, str]], None], first: asyncio.Future[set[tuple[watchfiles.Change, str]]]) -> None:
        try:
            batch = await first
            while True:
                if batch:
                    self.events.put_nowait(None)
                batch = await anext(changes)
        except StopAsyncIteration:
            return
        finally:
            await changes.aclose()

    async def _catch_up(self) -> None:
        """The file may have changed between loading the served flow and watching it (services
        can take minutes to start): reload now if what it holds now differs from what is served."""
        started = time.monotonic()
        data = _read(self.path)
        self.last_digest = _digest_of(data)
        try:
            flow = self._compile(data)
        except FlowError as exc:
            self._failed(exc)
            return
        if flow.spec != self.host.flow.spec:
            self._apply(flow, started)

    def _wanted(self, _change: watchfiles.Change, changed: str) -> bool:
        return os.path.abspath(changed) in self.targets

    async def _settle(self, stop: asyncio.Event, window: float | None = None) -> bool:
        """Wait until no event came for the quiet window; True when any event came meanwhile."""
        window = self.quiet if window is None else window
        more = False
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.events.get(), timeout=window)
            except TimeoutError:
                return more
            more = True
        return more

    async def _check(self, stop: asyncio.Event) -> None:
        """One save: reload if the bytes changed; report a failure only once the file has been
        quiet for one more window (an editor may still be mid-save)."""
        while not stop.is_set():
            started = time.monotonic()
            data = _read(self.path)
            digest = _digest_of(data)
            if digest is not None and digest == self.last_digest:
                return
            try:
                flow = self._compile(data)
            except FlowError as exc:
                if await self._settle(stop):
                    continue  # it changed again: look at the newer content instead
                self.last_digest = digest
                self._failed(exc)
                return
            self.last_digest = digest
            self._apply(flow, started)
            return

    def _compile(self, data: bytes | OSError | None) -> CompiledFlow:
        here = Location(self.name, 1, 1)
        if data is None:
            raise FlowError("the flow file is gone", location=here, hint="save it again to reload")
        if isinstance(data, OSError):
            raise FlowError(f"cannot read the flow file: {data.strerror or data}", location=here)
        check_size(len(data), self.name)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FlowError(f"the flow file is not UTF-8: {exc.reason} at byte {exc.start}", location=here) from None
        try:
            return load_flow_text(text, self.name)
        except FlowError:
            raise
        except Exception as exc:  # a bug on the way must not stop the watcher or the server
            raise FlowError(f"internal error while loading the flow: {exc!r}", location=here) from exc

    def _failed(self, error: FlowError) -> None:
        self.host.reload_failed(error)
        errors = error.errors if isinstance(error, FlowErrors) else [error]
        self.log(f"reload failed, still serving the last good flow: {errors[0]}")
        for more in errors[1:]:
            self.log(f"  {more}")

    def _apply(self, flow: CompiledFlow, started: float) -> None:
        """Swap `flow` in now (FlowHost.reload swaps before it touches services); its service
        restarts run in the background. A restart still in progress for an older save whose
        services differ from this one's is cancelled: it would start what is already stale."""
        prints = dict(flow.service_fingerprints)
        self.applying = [(t, p) for t, p in self.applying if not t.done()]
        for task, old_prints in self.applying:
            if old_prints != prints:
                task.cancel()
        self.applying.append((asyncio.create_task(self._reload(flow, started)), prints))

    async def _reload(self, flow: CompiledFlow, started: float) -> None:
        try:
            restarted = await self.host.reload(flow)
        except asyncio.CancelledError:
            if not self.stopping:
                self.log(f"reload of {self.name} superseded by a newer save")
            raise
        except Exception as exc:  # keep serving whatever is up, and say what went wrong
            self.log(f"reloaded {self.name}, but restarting its services failed: {str(exc).splitlines()[0]}")
            return
        elapsed = (time.monotonic() - started) * 1000
        line = f"reloaded {self.name} in {elapsed:.0f} ms (restarted: {', '.join(restarted) or 'none'})"
        down = self.host.supervisor.not_ready(restarted)
        if down:
            line += "; not ready: " + "; ".join(f"{node}: {reason}" for node, reason in down.items())
        if self.host.restart_needed:
            line += "; restart needed for " + ", ".join(self.host.restart_needed)
        self.log(line)


async def _first(changes: AsyncGenerator[set[tuple[watchfiles.Change, str]], None]) -> set[tuple[watchfiles.Change, str]]:
    return await anext(changes)


def _read(path: Path) -> bytes | OSError | None:
    """The file's bytes (one more than the loader accepts, at most: a huge file is an error,
    not a read into memory); None when it does not exist; the error when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_FLOW_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return exc


def _digest_of(data: bytes | OSError | None) -> str | None:
    """What is compared between saves; None (never equal) for an unreadable file."""
    if data is None:
        return _MISSING
    if isinstance(data, OSError):
        return None
    return hashlib.sha256(data).hexdigest()
