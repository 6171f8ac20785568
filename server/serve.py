"""`flowctl up` and `flowctl down`.

`up FLOW`: load the flow, reserve the ports, start its service nodes, then serve the API
(and the web UI on its own port) with uvicorn in this process, hot-reloading FLOW on change.
SIGINT/SIGTERM: take no new runs (they get 503 while the servers still answer), let runs
in flight finish within `drain_timeout` (the rest end with `event: error`), stop the managed
processes, then the servers, exit 0. A second signal skips the
drain. `-d` starts the same command in the background and returns once it serves.

Where a running `up` is recorded: `<state dir>/up.pid` (written before the services start,
so `down` can stop an `up` that is still starting) and `<state dir>/up.json` (its URLs and
ports, written once it serves). A record whose process is gone, or is not a flowctl process
(`/proc/PID/cmdline`), or started at another time than recorded, is stale: it never stops a
new `up` and never makes `down` signal a stranger.

    flowctl up flows/local_chat.yml --port 9000
    flowctl up -d flows/local_chat.yml && flowctl down flows/local_chat.yml
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import FlowctlError, FlowError
from ..engine.paths import state_dir_for
from ..engine.runs import RunStatus
from .auth import ENV_VAR

EXIT_OK, EXIT_FLOW, EXIT_USAGE, EXIT_RUN, EXIT_SERVICE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

log = logging.getLogger("flowctl.server")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    base_path: str
    ui_port: int | None
    drain_timeout: float

    def url(self, port: int, path: str = "") -> str:
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}{path}"


def resolve_settings(server: Any, args: argparse.Namespace) -> Settings:
    """The flow's `server:` section, overridden by the command line."""
    ui_port = server.ui_port
    if getattr(args, "ui_port", None) is not None:
        ui_port = args.ui_port or None  # --ui-port 0 turns it off
    return Settings(
        host=args.host or server.host,
        port=server.port if args.port is None else args.port,
        base_path=server.base_path,
        ui_port=ui_port,
        drain_timeout=server.drain_timeout,
    )


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, insecure: bool) -> str | None:
    """Why binding `host` is refused, or None."""
    if is_loopback(host) or api_key or insecure:
        return None
    return f"refusing to serve on {host} without an API key: set FLOWCTL_API_KEY (clients send `Authorization: Bearer <key>`) or pass --insecure"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind (not yet listen: connections are refused until we serve) so the port is ours
    before the services start. OSError when it is taken."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock


# -- the record of a running `up` ---------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


@dataclass
class UpRecord:
    """What `up` leaves in its state dir for `down` and for a second `up`."""

    pid: int
    flow: str
    start_ticks: int | None = None
    api: str | None = None
    ui: str | None = None
    host: str | None = None
    port: int | None = None
    ui_port: int | None = None
    base_path: str | None = None
    started: float | None = None


class PidFile:
    def __init__(self, flow_file: str | Path) -> None:
        self.dir = state_dir_for(flow_file)
        self.pid_path = self.dir / "up.pid"
        self.json_path = self.dir / "up.json"
        self.flow = str(Path(flow_file).resolve())

    def read(self) -> UpRecord | None:
        """The recorded `up`, or None (no record, or an unreadable one)."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        record = UpRecord(pid=pid, flow=self.flow)
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self.json_path.read_text())
            if data.get("pid") == pid:
                record = UpRecord(**{k: v for k, v in data.items() if k in UpRecord.__dataclass_fields__})
        return record

    def live(self) -> tuple[UpRecord | None, str | None]:
        """(the record if its process is a live flowctl, else None; why a record is stale)."""
        record = self.read()
        if record is None:
            return None, None
        if record.pid == os.getpid():
            return None, None
        if not _alive(record.pid):
            return None, f"process {record.pid} is gone"
        cmdline = _cmdline(record.pid)
        if cmdline is not None and "flowctl" not in cmdline:
            return None, f"process {record.pid} is not flowctl ({cmdline.strip()[:60]})"
        ticks = _start_ticks(record.pid)
        if record.start_ticks is not None and ticks is not None and ticks != record.start_ticks:
            return None, f"process {record.pid} is another process than the one recorded"
        return record, None

    def write_pid(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.pid_path, f"{os.getpid()}\n")
        _atomic_write(self.json_path, json.dumps(asdict(UpRecord(pid=os.getpid(), flow=self.flow, start_ticks=_start_ticks(os.getpid()))), indent=2) + "\n")

    def write_serving(self, record: UpRecord) -> None:
        _atomic_write(self.json_path, json.dumps(asdict(record), indent=2) + "\n")

    def remove(self, pid: int | None = None) -> None:
        """Remove the record (only if it still names `pid`, when given)."""
        if pid is not None:
            current = self.read()
            if current is not None and current.pid != pid:
                return
        for path in (self.json_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- up -----------------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"flowctl: error: {message}", file=sys.stderr, flush=True)


def _say(message: str) -> None:
    print(f"flowctl: {message}", file=sys.stderr, flush=True)


def up(args: argparse.Namespace) -> int:
    from ..engine.flow import load_flow

    flow = load_flow(args.flow)  # a FlowError goes to the CLI: FILE:LINE:COL, exit 1
    settings = resolve_settings(flow.server, args)
    api_key = os.environ.get(ENV_VAR) or None
    refused = check_bind(settings.host, api_key, getattr(args, "insecure", False))
    if refused:
        _error(refused)
        return EXIT_USAGE
    pidfile = PidFile(args.flow)
    running, stale = pidfile.live()
    if running is not None:
        where = f", {running.api}" if running.api else ""
        _error(f"{args.flow} is already up (pid {running.pid}{where}); `flowctl down {args.flow}` stops it")
        return EXIT_USAGE
    if stale:
        _say(f"ignoring a stale pid file ({stale})")
        pidfile.remove()
    if getattr(args, "detach", False):
        return _detach(args, pidfile)
    # the key is flowctl's own: no managed process inherits it, no template reads it
    os.environ.pop(ENV_VAR, None)
    _configure_logging()
    sockets: list[socket.socket] = []
    try:
        for port in (settings.port, settings.ui_port):
            if port is None:
                continue
            try:
                sockets.append(bind_socket(settings.host, port))
            except OSError as exc:
                _error(f"cannot listen on {settings.host}:{port}: {exc.strerror or exc}")
                return EXIT_USAGE
        pidfile.write_pid()
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(_serve(args, flow, settings, api_key, sockets, pidfile))
        finally:
            pidfile.remove(os.getpid())
    finally:
        for sock in sockets:
            sock.close()


def _loop_factory() -> Any:
    """uvloop when it is installed (it is a dependency): the per-token path is mostly event
    loop and socket work, which uvloop does in C. Plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("flowctl: %(message)s"))
    for name in ("flowctl",):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


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


async def _serve(args: argparse.Namespace, flow: Any, settings: Settings, api_key: str | None, sockets: list[socket.socket], pidfile: PidFile) -> int:
    from ..engine.host import FlowHost
    from .app import create_app, default_keepalive
    from .routes_api import ServerContext
    from .ui import create_ui_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    force = asyncio.Event()

    def fixed_settings(server: Any) -> dict[str, Any]:
        # what a reload cannot change without a restart, as the command line resolves it
        resolved = resolve_settings(server, args)
        return {"host": resolved.host, "port": resolved.port, "ui_port": resolved.ui_port, "base_path": resolved.base_path, "max_body_bytes": server.max_body_bytes}

    host = FlowHost(flow, fixed_settings=fixed_settings)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            force.set()
            _say("second signal: stopping now")
        else:
            _say(f"{signal.Signals(signum).name}: stopping (runs in flight get {host.flow.server.drain_timeout:g}s)")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    # -- services first: a failure here exits with the service's error, nothing is served
    starting = loop.create_task(host.start())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(BaseException):
            await starting
        await host.stop(0)
        return EXIT_OK
    try:
        starting.result()
    except FlowctlError as exc:  # a service failed to set up or start (or its spec is wrong)
        stopping.cancel()
        await host.stop(0)
        _error(str(exc))
        return EXIT_FLOW if isinstance(exc, FlowError) else EXIT_SERVICE

    # -- then the servers
    ctx = ServerContext(host=host, keepalive=default_keepalive(), bind_host=settings.host)
    api_sock = sockets[0]

    def read_timeout() -> float:
        return host.flow.server.read_timeout

    api = _uvicorn_server(create_app(host, api_key=api_key, ctx=ctx), settings, api_sock.getsockname()[1], read_timeout)
    servers = [(api, api_sock)]
    ui = None
    if settings.ui_port is not None:
        ui = _uvicorn_server(create_ui_app(ctx, api_key=api_key), settings, sockets[1].getsockname()[1], read_timeout)
        servers.append((ui, sockets[1]))
    tasks = [loop.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(task.done() for task in tasks) or stop.is_set():
            break
        await asyncio.sleep(0.01)
    failed = [task for task in tasks if task.done()]
    api_url = settings.url(api_sock.getsockname()[1], settings.base_path)
    ui_url = settings.url(sockets[1].getsockname()[1]) if ui is not None else None
    if failed:
        exc = failed[0].exception() if not failed[0].cancelled() else None
        _error(f"the HTTP server stopped at start: {exc!r}")
        stop.set()
    else:
        pidfile.write_serving(
            UpRecord(
                pid=os.getpid(),
                flow=pidfile.flow,
                start_ticks=_start_ticks(os.getpid()),
                api=api_url,
                ui=ui_url,
                host=settings.host,
                port=api_sock.getsockname()[1],
                ui_port=sockets[1].getsockname()[1] if ui is not None else None,
                base_path=settings.base_path,
                started=time.time(),
            )
        )
        _say(f"serving {args.flow} on {api_url}" + (f" (UI {ui_url})" if ui_url else ""))

    watcher = _start_reload(host, args, stop) if not getattr(args, "no_reload", False) else None

    # -- until a signal (or a server dies)
    server_done = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED))
    await asyncio.wait({stopping, server_done}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    server_done.cancel()

    # -- graceful stop: runs in flight drain while the servers still answer (new runs get 503
    # "shutting down", /ready 503: a client is told, not refused); then the services stop,
    # then the servers
    if watcher is not None:  # it sees `stop`; a reload starting services is cut short
        _, still = await asyncio.wait({watcher}, timeout=2.0)
        if still:
            watcher.cancel()
        with contextlib.suppress(BaseException):
            await watcher
    drain = loop.create_task(host.stop())
    forced = loop.create_task(force.wait())
    await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
    if not drain.done():
        for server, _ in servers:
            server.force_exit = True
        for record in list(host.runs.values()):
            record.interrupt(RunStatus.FAILED, "flowctl is shutting down")
        await drain
    forced.cancel()
    with contextlib.suppress(Exception):
        drain.result()
    for server, _ in servers:
        server.should_exit = True
    done, pending = await asyncio.wait(tasks, timeout=5.0)
    for task in pending:
        task.cancel()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
    _say("stopped")
    return EXIT_OK


def _start_reload(host: Any, args: argparse.Namespace, stop: asyncio.Event) -> asyncio.Task[Any] | None:
    try:
        from ..engine.reload import watch_flow
    except ImportError as exc:
        _say(f"hot reload is not available ({exc})")
        return None

    async def watch() -> None:
        try:
            await watch_flow(host, args.flow, stop=stop, log=_say)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reload must never take the server down
            log.error("hot reload stopped: %s", exc, exc_info=True)

    return asyncio.get_running_loop().create_task(watch(), name="flowctl-reload")


# -- detach -------------------------------------------------------------------------------------


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "flowctl", "up", str(args.flow)]
    if args.host:
        argv += ["--host", args.host]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    if args.ui_port is not None:
        argv += ["--ui-port", str(args.ui_port)]
    if args.insecure:
        argv.append("--insecure")
    if args.no_reload:
        argv.append("--no-reload")
    return argv


def _detach(args: argparse.Namespace, pidfile: PidFile) -> int:
    """Start `up` (without -d) in its own session, logging to `<state dir>/up.log`; echo its
    log here until it serves (or fails), then return."""
    pidfile.dir.mkdir(parents=True, exist_ok=True)
    log_path = pidfile.dir / "up.log"
    with open(log_path, "ab") as out:
        offset = out.tell()
        child = subprocess.Popen(
            _child_argv(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    try:
        with open(log_path, "rb") as logf:
            logf.seek(offset)
            while True:
                for line in logf.readlines():
                    sys.stderr.write(line.decode(errors="replace"))
                sys.stderr.flush()
                code = child.poll()
                if code is not None:
                    for line in logf.readlines():
                        sys.stderr.write(line.decode(errors="replace"))
                    _error(f"`flowctl up` exited with {code} before serving (log: {log_path})")
                    return code or EXIT_RUN
                record = pidfile.read()
                if record is not None and record.pid == child.pid and record.api:
                    where = record.api + (f" (UI {record.ui})" if record.ui else "")
                    print(f"flowctl: {args.flow} is up in the background (pid {child.pid}) on {where}; log: {log_path}; pid file: {pidfile.pid_path}; stop it with `flowctl down {args.flow}`", flush=True)
                    return EXIT_OK
                time.sleep(0.05)
    except KeyboardInterrupt:
        _say(f"still starting in the background (pid {child.pid}); `flowctl down {args.flow}` stops it")
        return EXIT_INTERRUPTED


# -- down ---------------------------------------------------------------------------------------


def down(args: argparse.Namespace) -> int:
    pidfile = PidFile(args.flow)
    if pidfile.read() is None:
        _say(f"{args.flow} is not up (no pid file in {pidfile.dir})")
        return EXIT_OK
    record, stale = pidfile.live()
    if record is None:
        _say(f"{args.flow} is not up; removed a stale pid file ({stale})")
        pidfile.remove()
        return EXIT_OK
    timeout = getattr(args, "timeout", 30.0)
    _say(f"stopping {args.flow} (pid {record.pid})")
    started = time.monotonic()
    try:
        os.kill(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.remove(record.pid)
        _say("it was already gone")
        return EXIT_OK
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not _alive(record.pid):
            pidfile.remove(record.pid)
            _say(f"stopped {args.flow} (pid {record.pid}) in {time.monotonic() - started:.1f}s")
            return EXIT_OK
        time.sleep(0.05)
    # still there: it ignores SIGTERM or cannot drain; kill it (its managed processes have
    # their own watchdogs and process groups)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    kill_deadline = time.monotonic() + 5.0
    while _alive(record.pid) and time.monotonic() < kill_deadline:
        time.sleep(0.05)
    pidfile.remove(record.pid)
    _error(f"{args.flow} (pid {record.pid}) did not stop within {timeout:g}s after SIGTERM; killed it")
    return EXIT_RUN


__all__ = ["PidFile", "Settings", "UpRecord", "bind_socket", "check_bind", "down", "is_loopback", "resolve_settings", "up"]
