"""The command node: argv only, stdin and arguments from templates, stdout as a value or a
line stream, timeout, exit codes with stderr, and the process group gone when the run ends."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from support.dag import consume, run_flow
from support.procs import pid_alive
from support.waiting import async_wait_until

from flowctl.engine.errors import RunError
from flowctl.engine.flow import load_flow_text
from flowctl.engine.scheduler import new_http_client, run_workflow

PY = json.dumps(sys.executable)


def command_flow(argv: list[str], *, extra: str = "") -> str:
    return f"""
nodes:
  cmd:
    type: command
    argv: {json.dumps(argv)}
{extra}
workflows:
  w: {{output: cmd}}
"""


async def test_each_argument_is_one_argv_item_never_shell_syntax(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` && touch {marker}"
    flow = command_flow([sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", "${input.text}", "two words"], extra="    stdout: json")
    chunks, _ = await run_flow(flow, {"text": hostile})
    assert chunks == [[hostile, "two words"]]
    assert not marker.exists()


async def test_stdin_from_a_template_and_stdout_as_text() -> None:
    flow = command_flow([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], extra='    stdin: "${input.text}"')
    assert (await run_flow(flow, {"text": "hello\nworld"}))[0] == ["HELLO\nWORLD"]


async def test_stdout_lines_stream_to_the_client_as_they_are_written(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = (
        "import os, time\n"
        "print('line 0', flush=True)\n"
        "deadline = time.monotonic() + 30\n"
        f"while not os.path.exists({str(go)!r}):\n"
        "    if time.monotonic() > deadline: raise SystemExit('the test never said go')\n"
        "    time.sleep(0.01)\n"
        "print('line 1')\nprint('line 2', end='')\n"
    )
    flow = load_flow_text(f"""
nodes:
  cmd:
    type: command
    argv: [{PY}, -c, {json.dumps(script)}]
    stdout: lines
  reply: {{type: sse-sink, source: "${{nodes.cmd.output as stream/text}}"}}
""")
    async with new_http_client() as http:
        stream = run_workflow(flow, flow.default_workflow, {}, run_id="t", http=http, service_outputs={})
        try:
            first = await asyncio.wait_for(anext(stream), timeout=10)  # while the program waits for us
            go.touch()
            rest = [chunk async for chunk in stream]
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    assert [first, *rest] == ["line 0\n", "line 1\n", "line 2"]


async def test_a_stream_feeds_stdin_as_it_comes(upstream) -> None:
    from support.dag import chat_node
    from support.fake import expected_text

    flow = f"""
nodes:
  llm:
{chat_node(upstream, "cmd-stdin", stream=True, tokens=5)}
  shout:
    type: command
    argv: [{PY}, -c, "import sys; print(sys.stdin.read().upper(), end='')"]
    stdin: ${{nodes.llm.output as stream/text}}
workflows:
  w: {{output: shout}}
"""
    assert (await run_flow(flow))[0] == [expected_text(5).upper()]


async def test_a_non_zero_exit_fails_the_node_with_the_end_of_stderr() -> None:
    script = "import sys\nfor i in range(30): print(f'err {i}', file=sys.stderr)\nsys.exit(7)"
    flow = command_flow([sys.executable, "-c", script], extra="    stderr_lines: 3")
    with pytest.raises(RunError) as failed:
        await run_flow(flow)
    assert failed.value.node == "cmd"
    message = str(failed.value)
    assert "exited with code 7" in message
    assert message.endswith("err 27\nerr 28\nerr 29")
    assert "err 26" not in message


async def test_json_that_does_not_parse_is_an_error() -> None:
    with pytest.raises(RunError, match=r"printed no JSON .*: not json"):
        await run_flow(command_flow(["echo", "not json"], extra="    stdout: json"))


async def test_a_program_that_cannot_start_is_named() -> None:
    with pytest.raises(RunError, match=r"cannot start /no/such/program"):
        await run_flow(command_flow(["/no/such/program"]))


def sleeper_flow(pid_file: Path, *, timeout: float) -> str:
    # the program starts a child of its own: the whole group must go, not only the leader
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)\n"
    )
    return command_flow([sys.executable, "-c", script], extra=f"    timeout: {timeout}\n    stop_timeout: 0.5")


async def test_running_past_the_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    with pytest.raises(RunError, match=r"ran longer than 1s"):
        await run_flow(sleeper_flow(pid_file, timeout=1))
    pids = [int(p) for p in pid_file.read_text().split()]
    await async_wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5, message=f"processes {pids} still alive")


async def test_the_group_is_killed_when_the_run_is_cancelled(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    flow = load_flow_text(sleeper_flow(pid_file, timeout=60))
    task = asyncio.get_running_loop().create_task(consume(flow))
    try:
        await async_wait_until(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2, timeout=10)
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pids = [int(p) for p in pid_file.read_text().split()]
    await async_wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=5, message=f"processes {pids} still alive")
