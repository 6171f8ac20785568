"""`flowctl up FLOW`: serve one flow until a signal.

`up(options)` checks what can be checked before anything starts (the flow compiles, the bind
is allowed, no other `up` of this flow runs, the ports are free), then `Up.run()` goes
through three phases, as uvicorn's `Server` does:

1. **startup**: the service nodes start (a failure exits with the service's error, nothing is
   served); then the API (and the web UI, on its own port) serve with uvicorn in this
   process, the pid file records the URLs, hot reload watches FLOW;
2. **main loop**: until SIGINT/SIGTERM, or one of the HTTP servers dies;
3. **shutdown**: take no new runs (they get 503 while the servers still answer), let runs in
   flight finish within `drain_timeout` (the rest end with `event: error`; a second signal
   cuts the drain short), stop the managed processes, then the servers, exit 0.

    flowctl up flows/local_chat.yml --port 9000
    flowctl up -d flows/local_chat.yml && flowctl down flows/local_chat.yml
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..engine.errors import ExitCode, FlowctlError
from ..engine.graph import CompiledFlow
from ..engine.host import FlowHost
from ..engine.logs import own_log_file
from ..engine.spec import ServerSpec
from ..nodes import proc
from ..nodes.process_log import ProcessLog
from . import console as console_module
from .auth import ENV_VAR
from .bind import bind_socket, check_bind, listener_refusal
from .console import Console, error, say
from .options import Settings, UpOptions, resolve_settings
from .pidfile import PidFile, UpRecord

log = logging.getLogger("flowctl.server")


def up(options: UpOptions) -> int:
    from ..engine.flow import load_flow

    flow = load_flow(options.flow)  # a FlowError goes to the CLI: FILE:LINE:COL, exit 1
    settings = resolve_settings(flow.server, options)
    api_key = os.environ.get(ENV_VAR) or None
    refused = check_bind(settings.host, api_key, options.insecure) or listener_refusal(flow, options.insecure)
    if refused:
        error(refused)
        return ExitCode.USAGE
    pidfile = PidFile(options.flow)
    running, stale = pidfile.live()
    if running is not None:
        where = f", {running.api}" if running.api else ""
        error(f"{options.flow} is already up (pid {running.pid}{where}); `flowctl down {options.flow}` stops it")
        return ExitCode.USAGE
    if stale:
        say(f"ignoring a stale pid file ({stale})")
        pidfile.remove()
    if options.detach:
        from .detach import detach

        return detach(options, pidfile)
    # the key is flowctl's own: no managed process inherits it, no template reads it
    os.environ.pop(ENV_VAR, None)
    console = Console(fmt=options.log_format, verbose=options.verbose, names=flow.services)
    own_log = ProcessLog(keep=0)
    own_log.open(own_log_file(pidfile.dir))
    console.log_to(own_log)
    console_module.install(console)
    _configure_logging(console)
    sockets: list[socket.socket] = []
    try:
        services = ", ".join(flow.services) or "none"
        say(f"starting {options.flow} ({flow.name}; services: {services})" + (", setting their environments up again (--build)" if options.build else ""))
        for port in (settings.port, settings.ui_port):
            if port is None:
                continue
            try:
                sockets.append(bind_socket(settings.host, port))
            except OSError as exc:
                error(f"cannot listen on {settings.host}:{port}: {exc.strerror or exc}")
                return ExitCode.USAGE
        pidfile.write_pid()
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(Up(options, flow, settings, api_key, sockets, pidfile, console).run())
        finally:
            pidfile.remove(os.getpid())
    finally:
        for sock in sockets:
            sock.close()
        console_module.install(None)
        own_log.close()


class Up:
    """One `flowctl up` inside its event loop: `run()` is startup → main loop → shutdown."""

    def __init__(self, options: UpOptions, flow: CompiledFlow, settings: Settings, api_key: str | None, sockets: list[socket.socket], pidfile: PidFile, console: Console | None = None) -> None:
        self.options = options
        self.settings = settings
        self.api_key = api_key
        self.sockets = sockets
        self.pidfile = pidfile
        self.console = console or Console(names=flow.services)
        from .app import default_keepalive
        from .routes_api import ServerContext

        self.host = FlowHost(flow, fixed_settings=self._fixed_settings, log=self.console.service)
        #: what the routes are given; made before the services, which an http-trigger uses
        self.ctx = ServerContext(host=self.host, keepalive=default_keepalive(), bind_host=settings.host)
        #: set by the first signal (or a server that died): stop serving
        self.stop = asyncio.Event()
        #: set by a second signal: skip the drain
        self.force = asyncio.Event()
        self.servers: list[tuple[Any, socket.socket]] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.watcher: asyncio.Task[Any] | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            code = await self.start_services()
            if code is not None:
                return code
            await self.start_servers()
            await self.main_loop()
            await self.shutdown()
            say("stopped")
            return ExitCode.OK
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _fixed_settings(self, server: ServerSpec) -> dict[str, Any]:
        """What a reload cannot change without a restart, as the options resolve it."""
        resolved = resolve_settings(server, self.options)
        return {"host": resolved.host, "port": resolved.port, "ui_port": resolved.ui_port, "base_path": resolved.base_path, "max_body_bytes": server.max_body_bytes}

    def _on_signal(self, signum: int) -> None:
        if self.stop.is_set():
            self.force.set()
            say("second signal: stopping now")
        else:
            say(f"{signal.Signals(signum).name}: stopping (runs in flight get {self.host.flow.server.drain_timeout:g}s)")
        self.stop.set()

    # -- 1. startup ---------------------------------------------------------------------------

    async def start_services(self) -> int | None:
        """Start the services first; a signal meanwhile stops them again. An exit code when
        `up` ends here (a service failed, or it was told to stop), else None."""
        from .routes_compat import start_triggered_run

        host = self.host
        # an http-trigger's requests start runs as the API's background runs do
        host.supervisor.start_run = functools.partial(start_triggered_run, self.ctx)
        loop = asyncio.get_running_loop()
        starting = loop.create_task(host.start(rebuild=self.options.build))
        stopping = loop.create_task(self.stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            await host.stop(0)
            return ExitCode.OK
        try:
            starting.result()
        except FlowctlError as exc:  # a service failed to set up or start (or its spec is wrong)
            await host.stop(0)
            error(str(exc))
            return exc.exit_code
        return None

    async def start_servers(self) -> None:
        """Serve the API (and the UI), record where, and watch the flow file."""
        from .app import create_app
        from .ui import create_ui_app

        loop = asyncio.get_running_loop()
        settings, sockets = self.settings, self.sockets
        ctx = self.ctx
        api_sock = sockets[0]

        def read_timeout() -> float:
            return self.host.flow.server.read_timeout

        self.servers = [(_uvicorn_server(create_app(self.host, api_key=self.api_key, ctx=ctx), settings, api_sock.getsockname()[1], read_timeout), api_sock)]
        if settings.ui_port is not None:
            ui_app = create_ui_app(ctx, api_key=self.api_key)
            self.servers.append((_uvicorn_server(ui_app, settings, sockets[1].getsockname()[1], read_timeout), sockets[1]))
        self.tasks = [loop.create_task(server.serve(sockets=[sock])) for server, sock in self.servers]
        while not all(server.started for server, _ in self.servers):
            if any(task.done() for task in self.tasks) or self.stop.is_set():
                break
            await asyncio.sleep(0.01)
        failed = [task for task in self.tasks if task.done()]
        if failed:
            exc = failed[0].exception() if not failed[0].cancelled() else None
            error(f"the HTTP server stopped at start: {exc!r}")
            self.stop.set()
            return
        if self.options.reload:
            self.watcher = _start_reload(self.host, self.options, self.stop)
        self._record_serving()  # the banner comes last: the lines a newcomer looks for

    def _record_serving(self) -> None:
        settings = self.settings
        api_port = self.sockets[0].getsockname()[1]
        ui_port = self.sockets[1].getsockname()[1] if len(self.servers) > 1 else None
        api_url = settings.url(api_port, settings.base_path)
        ui_url = settings.url(ui_port) if ui_port is not None else None
        self.pidfile.write_serving(
            UpRecord(
                pid=os.getpid(),
                flow=self.pidfile.flow,
                start_ticks=proc.start_ticks(os.getpid()),
                api=api_url,
                ui=ui_url,
                host=settings.host,
                port=api_port,
                ui_port=ui_port,
                base_path=settings.base_path,
                started=time.time(),
            )
        )
        urls = {"API": api_url}
        if ui_url:
            urls["web UI"] = ui_url
        urls["OpenAI"] = settings.url(api_port, "/v1")
        if self.host.flow.server.mcp_path is not None:
            urls["MCP"] = settings.url(api_port, self.host.flow.server.mcp_path)
        which = "" if _chosen_implicitly(self.options.flow) else f" {self.options.flow}"
        logs = f"flowctl logs -f{which}" if not which or which.endswith((".yml", ".yaml")) else f"flowctl -f{which} logs -f"
        hints = {"status": f"flowctl ps{which}", "logs": logs, "stop": f"flowctl down{which}" if self.options.in_background else "Ctrl-C"}
        watching = " (reloads on save)" if self.options.reload else ""
        self.console.banner(f"serving {self.options.flow} on {api_url}" + (f" (UI {ui_url})" if ui_url else "") + watching, urls, hints)

    # -- 2. main loop ---------------------------------------------------------------------------

    async def main_loop(self) -> None:
        """Until a signal, or an HTTP server dies."""
        stopping = asyncio.ensure_future(self.stop.wait())
        server_done = asyncio.ensure_future(asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED))
        try:
            await asyncio.wait({stopping, server_done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            server_done.cancel()
        self.stop.set()

    # -- 3. shutdown ----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Runs in flight drain while the servers still answer (new runs get 503 "shutting
        down", /ready 503: a client is told, not refused; a second signal cuts the drain
        short); then the services stop, then the servers."""
        loop = asyncio.get_running_loop()
        if self.watcher is not None:  # it sees `stop`; a reload starting services is cut short
            _, still = await asyncio.wait({self.watcher}, timeout=2.0)
            if still:
                self.watcher.cancel()
            with contextlib.suppress(BaseException):
                await self.watcher
        drain = loop.create_task(self.host.stop())
        forced = loop.create_task(self.force.wait())
        await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():
            for server, _ in self.servers:
                server.force_exit = True
            self.host.interrupt_all("flowctl is shutting down")
            await drain
        forced.cancel()
        with contextlib.suppress(Exception):
            drain.result()
        for server, _ in self.servers:
            server.should_exit = True
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=5.0)
            for task in pending:
                task.cancel()


# -- helpers ------------------------------------------------------------------------------------


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is installed (it is a dependency): the per-token path is mostly event
    loop and socket work, which uvloop does in C. Plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class _ConsoleHandler(logging.Handler):
    """flowctl's logger (the servers' refusals and internal errors) onto the console."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        kind = "error" if record.levelno >= logging.ERROR else "warning" if record.levelno >= logging.WARNING else "info"
        self.console.say(self.format(record), kind)


def _configure_logging(console: Console) -> None:
    logger = logging.getLogger("flowctl")
    logger.handlers[:] = [_ConsoleHandler(console)]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _chosen_implicitly(flow: str | os.PathLike[str]) -> bool:
    """Whether the commands of the banner find this flow without naming it (from here)."""
    from ..engine.flow_files import choose_flow

    try:
        return os.path.samefile(choose_flow(None).path, flow)
    except (FlowctlError, OSError):
        return False



def _uvicorn_server(app: Any, settings: Settings, port: int, read_timeout: Callable[[], float]) -> Any:
    import uvicorn

    from .read_timeouts import http_protocol

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # `up` handles the signals itself
            yield

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,  # runs have drained before the servers are told to stop
        server_header=False,
        http=http_protocol(read_timeout),  # httptools (a dependency), with read deadlines
    )
    return Server(config)


def _start_reload(host: FlowHost, options: UpOptions, stop: asyncio.Event) -> asyncio.Task[Any] | None:
    try:
        from ..engine.reload import watch_flow
    except ImportError as exc:
        say(f"hot reload is not available ({exc})")
        return None

    async def watch() -> None:
        try:
            await watch_flow(host, options.flow, stop=stop, log=say)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reload must never take the server down
            log.error("hot reload stopped: %s", exc, exc_info=True)

    return asyncio.get_running_loop().create_task(watch(), name="flowctl-reload")


__all__ = ["Up", "up"]
