"""The command line. Thin on purpose: parse arguments, call the engine (or the server), print,
and exit with the error's own `exit_code` (`engine.errors.ExitCode`: 0 success; 1 the flow
file is invalid; 2 bad usage or bad input; 3 a run failed; 4 a service failed to set up or
start; 130 interrupted). A user never sees a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.errors import ExitCode, FlowctlError, InputError, RunError, TemplateError, WorkflowNotFound
from .server.console import error as _error

if TYPE_CHECKING:
    from .engine.host import FlowHost

DEFAULT_FLOW = "flows/local_chat.yml"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return ExitCode.USAGE
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except FlowctlError as exc:
        _error(str(exc))
        return exc.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowctl", description="Run YAML flows that set up, start and stream from model servers.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"flowctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    up = commands.add_parser("up", help="start the services and serve the API and web UI; hot-reload on edits")
    up.add_argument("flow", nargs="?", default=DEFAULT_FLOW, help=f"flow file (default: {DEFAULT_FLOW})")
    up.add_argument("--host", help="API bind address (default: the flow's, else 127.0.0.1)")
    up.add_argument("--port", type=int, help="API port (default: the flow's, else 8080)")
    up.add_argument("--ui-port", type=int, help="web UI port (default: the flow's, else 8081; 0 turns it off)")
    up.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without FLOWCTL_API_KEY")
    up.add_argument("--no-reload", action="store_true", help="do not watch the flow file")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background (pid file beside the flow)")
    up.set_defaults(handler=_cmd_up)

    down = commands.add_parser("down", help="stop a detached `flowctl up`")
    down.add_argument("flow", nargs="?", default=DEFAULT_FLOW)
    down.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to stop")
    down.set_defaults(handler=_cmd_down)

    run = commands.add_parser("run", help="run a workflow once and print its streamed output")
    run.add_argument("flow", nargs="?", default=DEFAULT_FLOW)
    run.add_argument("--input", dest="input_json", help="input as JSON, or @file.json")
    run.add_argument("-i", dest="pairs", action="append", default=[], metavar="KEY=VALUE", help="one input value (repeatable)")
    run.add_argument("-w", "--workflow", help="workflow id (default: the flow's default workflow)")
    run.add_argument("-v", "--verbose", action="store_true", help="print each node's start, end, skip or failure (with timings) to stderr")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", help="parse, validate and compile a flow without running it")
    validate.add_argument("flow", nargs="?", default=DEFAULT_FLOW)
    validate.set_defaults(handler=_cmd_validate)

    graph = commands.add_parser("graph", help="print the compiled graph (mermaid by default)")
    graph.add_argument("flow", nargs="?", default=DEFAULT_FLOW)
    graph.add_argument("--format", choices=["mermaid", "json", "dot"], default="mermaid")
    graph.add_argument("-w", "--workflow", help="only this workflow's nodes")
    graph.set_defaults(handler=_cmd_graph)

    schema = commands.add_parser("schema", help="print the JSON Schema of the native flow format")
    schema.set_defaults(handler=_cmd_schema)

    logs = commands.add_parser("logs", help="print a managed process's log")
    logs.add_argument("node", help="node id")
    logs.add_argument("flow", nargs="?", default=DEFAULT_FLOW)
    logs.add_argument("-n", "--lines", type=int, default=100, help="last N lines (0: all)")
    logs.set_defaults(handler=_cmd_logs)
    return parser


# -- commands ------------------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    from .engine.flow import load_flow

    flow = load_flow(args.flow)
    workflows = ", ".join(flow.workflows)
    print(f"{args.flow}: ok ({len(flow.nodes)} nodes, workflows: {workflows})")
    return ExitCode.OK


def _cmd_graph(args: argparse.Namespace) -> int:
    from .engine.export import FORMATS
    from .engine.flow import load_flow

    flow = load_flow(args.flow)
    workflow = None
    if args.workflow:
        workflow = flow.workflow(args.workflow)
        if workflow is None:
            raise WorkflowNotFound(args.workflow, list(flow.workflows))
    sys.stdout.write(FORMATS[args.format](flow, workflow))
    return ExitCode.OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from .engine.spec import FlowSpec

    schema = FlowSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "flowctl flow"
    print(json.dumps(schema, indent=2))
    return ExitCode.OK


def _cmd_run(args: argparse.Namespace) -> int:
    from .engine.flow import load_flow
    from .engine.host import FlowHost

    host = FlowHost(load_flow(args.flow))
    given = _parse_inputs(args.input_json, args.pairs)
    # the admission check a served run gets, before any service is started or `up` is asked
    workflow, _ = host.check(args.workflow, given)
    reused = _run_via_up(args.flow, workflow.id, given, verbose=args.verbose)
    if reused is not None:
        return reused
    from .server.auth import ENV_VAR

    os.environ.pop(ENV_VAR, None)  # the services this run starts must not inherit flowctl's key
    return asyncio.run(_run(host, workflow.id, given, verbose=args.verbose))


def _run_via_up(flow_file: str, workflow_id: str, given: dict[str, Any], *, verbose: bool = False) -> int | None:
    """When a healthy `flowctl up` of this flow is running, run through it instead of
    starting a second copy of its services (a model server may hold a whole GPU).
    None when there is no such `up`."""
    import httpx

    from .server.auth import ENV_VAR
    from .server.pidfile import PidFile

    record, _stale = PidFile(flow_file).live()
    if record is None or not record.api:
        return None
    headers = {}
    if os.environ.get(ENV_VAR):
        headers["Authorization"] = f"Bearer {os.environ[ENV_VAR]}"
    try:
        with httpx.Client(timeout=httpx.Timeout(5.0, read=None), headers=headers, trust_env=False) as client:
            if client.get(f"{record.api}/ready").status_code != 200:
                return None
            print(f"flowctl: running through `flowctl up` (pid {record.pid}, {record.api})", file=sys.stderr)
            url = f"{record.api}/workflows/{workflow_id}/runs"
            params = {"events": "nodes"} if verbose else None
            with client.stream("POST", url, json={"input": given}, params=params, headers={"Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    body = response.read().decode(errors="replace")
                    try:
                        message = json.loads(body).get("error") or body
                    except (json.JSONDecodeError, AttributeError):
                        message = body
                    _error(f"{url} answered {response.status_code}: {message}")
                    return ExitCode.USAGE if response.status_code == 422 else ExitCode.RUN
                return _print_sse(response.iter_lines())
    except httpx.HTTPError:
        return None


def _print_sse(lines: Any) -> int:
    """Print an SSE run stream's chunks as they come; the exit code from its end event."""
    from .nodes.sse_parser import iter_sse_events

    wrote_any = False
    for sse in iter_sse_events(lines):
        if sse.event == "message":
            sys.stdout.write(sse.data)
            sys.stdout.flush()
            wrote_any = True
        elif sse.event == "node":
            _print_event(json.loads(sse.data))
        elif sse.event in ("done", "error"):
            if wrote_any:
                sys.stdout.write("\n")
                sys.stdout.flush()
            end = json.loads(sse.data)
            if sse.event == "error":
                _error(end.get("message", "the run failed"))
                return ExitCode.RUN
            return ExitCode.OK if end.get("status") == "succeeded" else ExitCode.RUN
    _error("the stream from `flowctl up` ended without a final event")
    return ExitCode.RUN


def _print_event(event: dict[str, Any]) -> None:
    from .engine.node_events import describe

    print(describe(event), file=sys.stderr, flush=True)


async def _run(host: FlowHost, workflow_id: str, given: dict[str, Any], *, verbose: bool = False) -> int:
    """One run in this process, through a `FlowHost` of its own that starts only the services
    the workflow needs and stops them at the end. `verbose` prints node events to stderr."""
    from .engine.host import PreparedRun
    from .engine.node_events import NodeEvent
    from .engine.runs import RunStatus
    from .engine.scheduler import chunk_text

    task = asyncio.current_task()
    assert task is not None
    run: PreparedRun | None = None

    def on_sigterm() -> None:
        if run is None or not run.record.interrupt(RunStatus.CANCELLED, "interrupted (SIGTERM)"):
            task.cancel()  # still starting the services: stop that

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    out = sys.stdout
    wrote_any = False
    try:
        await host.start(only=host.flow.workflows[workflow_id].services)
        run = host.prepare(workflow_id, given)
        run.events = verbose
        async for chunk in host.stream(run):
            if isinstance(chunk, NodeEvent):
                _print_event(chunk.as_dict())
                continue
            out.write(chunk_text(chunk))
            out.flush()
            wrote_any = True
        if wrote_any:
            out.write("\n")
            out.flush()
        return ExitCode.OK if run.record.status is RunStatus.SUCCEEDED else ExitCode.INTERRUPTED
    except asyncio.CancelledError:
        return ExitCode.INTERRUPTED
    except RunError as exc:
        if wrote_any:
            out.write("\n")
        _error(str(exc))  # the host has said which service is down, if one is
        return ExitCode.RUN
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await asyncio.shield(host.stop(0))


def _parse_inputs(input_json: str | None, pairs: list[str]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    if input_json:
        text = input_json
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except OSError as exc:
                raise InputError("--input", f"cannot read {text[1:]}: {exc.strerror}") from None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("--input", f"not valid JSON ({exc.msg} at column {exc.colno})", hint='e.g. --input \'{"prompt": "Hello"}\'') from None
        if not isinstance(value, dict):
            raise InputError("--input", "must be a JSON object of input names to values")
        given.update(value)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(pair, "expected KEY=VALUE")
        given[key] = value
    return given


def _cmd_up(args: argparse.Namespace) -> int:
    from .server.options import UpOptions
    from .server.up import up

    options = UpOptions(flow=args.flow, host=args.host, port=args.port, ui_port=args.ui_port, insecure=args.insecure, reload=not args.no_reload, detach=args.detach)
    return up(options)


def _cmd_down(args: argparse.Namespace) -> int:
    from .server.down import down

    return down(args.flow, args.timeout)


def _cmd_logs(args: argparse.Namespace) -> int:
    from .engine.paths import state_dir_for

    node = args.node
    if not node or node in (".", "..") or "/" in node or "\\" in node or "\0" in node:
        raise InputError("node", f"'{node[:80]}' is not a node id", hint="give the id of a process-start node, as in the flow file")
    log = state_dir_for(args.flow) / "logs" / f"{node}.log"
    if not log.is_file():
        raise InputError("node", f"no log for '{node}' at {log}", hint="the node must be a process-start node that has run")
    with open(log, "rb") as handle:
        lines: Iterable[bytes]
        if args.lines > 0:
            lines = _last_lines(handle, args.lines)
        else:
            lines = iter(handle)  # the whole log, a line at a time
        out = sys.stdout
        for raw in lines:
            out.write(raw.rstrip(b"\r\n").decode("utf-8", errors="replace") + "\n")
    return ExitCode.OK


def _last_lines(handle: Any, count: int, block: int = 64 * 1024) -> list[bytes]:
    """The last `count` lines of a binary file, reading backwards from its end: a 100 MB log
    costs a few blocks, not 100 MB."""
    handle.seek(0, 2)
    position = handle.tell()
    data = b""
    while position > 0 and data.count(b"\n") <= count and len(data) < count * block:
        step = min(block, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
    lines = data.splitlines()
    if position > 0 and len(lines) > count:
        lines = lines[1:]  # the first may be the end of a line that began before the read
    return lines[-count:]


__all__ = ["main", "TemplateError"]
