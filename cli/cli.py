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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.errors import ExitCode, FlowctlError, InputError, RunError, TemplateError, WorkflowNotFound
from .server.console import FORMATS, Console
from .server.console import error as _error

if TYPE_CHECKING:
    from .engine.host import FlowHost

def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return ExitCode.USAGE
    try:
        if getattr(args, "takes_flow", False):
            _choose_flow(args)
        return int(args.handler(args))
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `flowctl logs | head`: the reader has had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except FlowctlError as exc:
        _error(str(exc))
        return exc.exit_code


def _choose_flow(args: argparse.Namespace) -> None:
    """The one flow the command means (`engine/flow_files.py` decides), into `args.flow`, and
    the env files read into the environment (the process's own values win)."""
    from .engine.errors import UsageError
    from .engine.flow_files import choose_flow, env_files_for, read_env_files

    names = getattr(args, "names", None)
    if names:  # `flowctl logs llm flow.yml`: a YAML file among the nodes is the flow
        flows = [name for name in names if name.endswith((".yml", ".yaml"))]
        args.names = [name for name in names if name not in flows]
        args.flow = flows[0] if len(flows) == 1 else args.flow
        if len(flows) > 1:
            raise UsageError(f"two flows given ({' and '.join(flows)})", hint="name one")
    given = list(dict.fromkeys(name for name in (args.file, getattr(args, "sub_file", None), getattr(args, "flow", None)) if name))
    if len(given) > 1:
        raise UsageError(f"two flows given ({' and '.join(given)})", hint="name one, as FLOW or with -f")
    env_files = args.env_file or []
    if env_files:
        read_env_files([Path(name) for name in env_files])
    choice = choose_flow(given[0] if given else None, read_dotenv=not env_files)
    if not env_files:
        read_env_files(env_files_for(choice.path, []))
    args.flow = str(choice.path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowctl",
        description="Run YAML flows that set up, start and stream from model servers.",
        epilog="FLOW, where a command takes one: the file given (as FLOW or -f), else $FLOWCTL_FLOW, else the one flow file in this directory, else flowctl's default flow (flows/local_chat.yml of its checkout). See docs/operating.md.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"flowctl {__version__}")
    parser.add_argument("-f", "--file", metavar="FLOW", help="the flow file (for any command; e.g. `flowctl -f flow.yml logs -f`)")
    parser.add_argument("--env-file", action="append", metavar="FILE", help="read variables from FILE (repeatable; default: .env beside the flow); the environment wins")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def flow_command(name: str, help: str, *, positional: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        if positional:
            sub.add_argument("flow", nargs="?", help="flow file (see FLOW in `flowctl --help`)")
        sub.add_argument("--file", dest="sub_file", metavar="FLOW", help=argparse.SUPPRESS)
        sub.set_defaults(takes_flow=True)
        return sub

    up = flow_command("up", "start the services and serve the API and web UI; hot-reload on edits")
    up.add_argument("--host", help="API bind address (default: $FLOWCTL_HOST, else the flow's, else 127.0.0.1)")
    up.add_argument("--port", type=int, help="API port (default: $FLOWCTL_PORT, else the flow's, else 8080)")
    up.add_argument("--ui-port", type=int, help="web UI port (default: $FLOWCTL_UI_PORT, else the flow's, else 8081; 0 turns it off)")
    up.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without FLOWCTL_API_KEY")
    up.add_argument("--no-reload", action="store_true", help="do not watch the flow file")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background (pid file beside the flow)")
    up.add_argument("--build", action="store_true", help="set every environment up again from nothing, even where it is current")
    up.add_argument("-v", "--verbose", action="store_true", help="show the services' own output on the console (it is always in `flowctl logs`)")
    up.add_argument("--log-format", choices=FORMATS, default="auto", help="console: colour on a terminal, plain otherwise (auto), or JSON lines")
    up.add_argument("--in-background", action="store_true", help=argparse.SUPPRESS)  # the copy `-d` starts
    up.set_defaults(handler=_cmd_up)

    down = flow_command("down", "stop a detached `flowctl up`")
    down.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to stop")
    down.set_defaults(handler=_cmd_down)

    ps = flow_command("ps", "show a running `flowctl up`: its services, their state, pids, ports and URLs")
    ps.add_argument("--json", action="store_true", help="the record and /ready's answer as JSON")
    ps.set_defaults(handler=_cmd_ps)

    run = flow_command("run", "run a workflow once and print its streamed output")
    run.add_argument("--input", dest="input_json", help="input as JSON, or @file.json")
    run.add_argument("-i", dest="pairs", action="append", default=[], metavar="KEY=VALUE", help="one input value (repeatable)")
    run.add_argument("-w", "--workflow", help="workflow id (default: the flow's default workflow)")
    run.add_argument("-v", "--verbose", action="store_true", help="print each node's start, end, skip or failure (with timings), and the output of the services it starts, to stderr")
    run.set_defaults(handler=_cmd_run)

    validate = flow_command("validate", "parse, validate and compile a flow without running it")
    validate.set_defaults(handler=_cmd_validate)

    graph = flow_command("graph", "print the compiled graph (mermaid by default)")
    graph.add_argument("--format", choices=["mermaid", "json", "dot"], default="mermaid")
    graph.add_argument("-w", "--workflow", help="only this workflow's nodes")
    graph.set_defaults(handler=_cmd_graph)

    schema = commands.add_parser("schema", help="print the JSON Schema of the native flow format")
    schema.set_defaults(handler=_cmd_schema)

    logs = flow_command("logs", "print the services' logs (all, interleaved), or some of them; -f follows", positional=False)
    logs.add_argument("names", nargs="*", metavar="NODE", help="service ids, or `flowctl` for flowctl's own log (default: all); a FLOW.yml here is the flow")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("-n", "--tail", default="100", help="lines from the end of each log, or `all` (default: 100)")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show when each line was written")
    logs.add_argument("--no-log-prefix", action="store_true", help="no `node |` prefix, even for several logs")
    logs.set_defaults(handler=_cmd_logs, flow=None)

    prune = commands.add_parser("prune", help="remove cached environments and pip caches that no given flow and no running flowctl uses")
    prune.add_argument("flows", nargs="*", metavar="FLOW", help="flows whose environments to keep (default: the flow FLOW resolves to)")
    prune.add_argument("-n", "--dry-run", action="store_true", help="only list what would be removed")
    prune.add_argument("-y", "--yes", action="store_true", help="do not ask")
    prune.set_defaults(handler=_cmd_prune)
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

    flow = load_flow(args.flow)
    # the services it starts say what they do; their own output goes to their logs
    host = FlowHost(flow, log=Console(names=flow.services, verbose=args.verbose).service, answerable=False)
    given = _parse_inputs(args.input_json, args.pairs)
    # the admission check a served run gets, before any service is started or `up` is asked
    workflow, _ = host.check(args.workflow, given)
    reused = _run_via_up(args.flow, workflow.id, given, verbose=args.verbose)
    if reused is not None:
        return reused
    from .server.auth import ENV_VAR
    from .server.bind import listener_refusal

    refused = listener_refusal(flow, False, workflow.services, remedy="(or serve it with `flowctl up --insecure`)")
    if refused:
        from .engine.errors import UsageError

        raise UsageError(refused)
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

    options = UpOptions(
        flow=args.flow,
        host=args.host,
        port=args.port,
        ui_port=args.ui_port,
        insecure=args.insecure,
        reload=not args.no_reload,
        detach=args.detach,
        in_background=args.in_background,
        build=args.build,
        verbose=args.verbose,
        log_format=args.log_format,
    )
    return up(options)


def _cmd_down(args: argparse.Namespace) -> int:
    from .server.down import down

    return down(args.flow, args.timeout)


def _cmd_ps(args: argparse.Namespace) -> int:
    from .server.ps import ps

    return ps(args.flow, as_json=args.json)


def _cmd_logs(args: argparse.Namespace) -> int:
    from .logs_command import parse_tail, show_logs

    return show_logs(args.flow, args.names, count=parse_tail(args.tail), follow=args.follow, timestamps=args.timestamps, prefix=False if args.no_log_prefix else None)


def _cmd_prune(args: argparse.Namespace) -> int:
    from .prune_command import prune

    flows = list(args.flows)
    if not flows:
        _choose_flow(args)
        flows = [args.flow]
    return prune(flows, dry_run=args.dry_run, yes=args.yes)


__all__ = ["main", "TemplateError"]
