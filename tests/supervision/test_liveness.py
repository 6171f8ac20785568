"""Liveness faults, injected for real: the managed server is killed (or crashes) while it
streams; flowctl notices at once, fails what depends on it with a clear error, and restarts
it per its `restart` policy with backoff and a limit."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import time
from pathlib import Path

import httpx
import pytest
from supervision_support import MARK_ENV, alive, bash_wrapped, chat_flow_yaml, marked, wait_gone
from support.fake import fake_vllm_argv
from support.procs import free_port
from support.waiting import async_wait_until, wait_until

from flowctl.engine.errors import RunError, ServiceError
from flowctl.engine.flow import load_flow
from flowctl.engine.host import FlowHost
from flowctl.nodes.base import ServiceState
from flowctl.nodes.sse_parser import iter_sse_events

FAST_RESTART = {"policy": "on-failure", "backoff": 0.05, "max_restarts": 3}


async def first_chunk(port: int, client: httpx.AsyncClient, **headers: str):
    """Open a streamed completion on the fake server and return (response, its line iterator)
    once the first token arrived."""
    request = client.build_request(
        "POST",
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"model": "qwen2-7b-instruct", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers=headers,
    )
    response = await client.send(request, stream=True)
    lines = response.aiter_lines()
    async for line in lines:
        if line.startswith("data:") and '"content"' in line:
            return response, lines
    raise AssertionError("the stream ended before the first token")


def first_event(rec, state: ServiceState, after: float = 0.0):
    return next((event for event in rec.events if event[1] is state and event[0] >= after), None)


async def test_kill_mid_stream_is_detected_at_once_and_restarted_with_a_new_pid(managed, mark) -> None:
    node = managed(fake={"tokens": 100_000, "token_delay_ms": 5}, restart=FAST_RESTART)
    await node.start()
    old_pid = node.status.pid
    assert old_pid is not None
    async with httpx.AsyncClient(timeout=10) as client:
        response, _lines = await first_chunk(node.port, client)
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        failed = await async_wait_until(lambda: first_event(node.rec, ServiceState.FAILED), timeout=1.0, interval=0.005,
                                        message="the owner hears of the death at once")
        assert failed[0] - killed_at < 1.0
        assert failed[2] == "was killed by SIGKILL"
        await response.aclose()

    await node.wait_state(ServiceState.READY, timeout=10)
    new_pid = node.status.pid
    assert new_pid is not None and new_pid != old_pid
    assert alive(new_pid) and not alive(old_pid)
    assert node.status.restarts == 1
    states = node.rec.states()
    assert states[-3:] == [ServiceState.FAILED, ServiceState.RESTARTING, ServiceState.READY]
    restarting = first_event(node.rec, ServiceState.RESTARTING)
    assert restarting is not None and "restart 1 of 3 in 0.05s" in (restarting[2] or "")
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"http://127.0.0.1:{node.port}/v1/models")).status_code == 200
    assert node.node.output["pid"] == new_pid
    log = node.node.log_path.read_text()
    assert "was killed by SIGKILL" in log and f"started pid {new_pid}" in log


async def test_crash_with_restart_never_stays_failed(managed, mark) -> None:
    node = managed(fake={"tokens": 50, "die_after_tokens": 3}, restart="never")
    await node.start()
    pid = node.status.pid
    async with httpx.AsyncClient(timeout=10) as client:
        response, lines = await first_chunk(node.port, client)
        with pytest.raises(httpx.HTTPError):
            async for _line in lines:
                pass
        await response.aclose()
    await async_wait_until(lambda: node.status.reason == "exited with code 3", timeout=2, message=lambda: str(node.status))
    assert node.status.state is ServiceState.FAILED
    assert node.status.pid is None
    await asyncio.wait_for(node.node._watcher, timeout=5)  # supervision is over: no restart comes
    assert ServiceState.RESTARTING not in node.rec.states()
    assert node.status.state is ServiceState.FAILED and node.status.restarts == 0
    assert not alive(pid) and not marked(mark)


async def test_restarts_back_off_and_give_up_at_the_limit(managed, mark, tmp_path: Path) -> None:
    """Once the server is killed, every restart fails (exits before ready): two restarts with a
    doubling backoff, then the node is failed for good."""
    port = free_port()
    broken = tmp_path / "broken"
    script = f"if [ -e {shlex.quote(str(broken))} ]; then echo 'cannot load the model'; exit 5; fi; exec {shlex.join(fake_vllm_argv(port))}"
    node = managed(command=script, port=port, readiness={"http": "/v1/models", "timeout": 10, "interval": 0.02},
                   restart={"policy": "on-failure", "max_restarts": 2, "backoff": 0.05})
    await node.start()
    broken.touch()
    os.kill(node.status.pid, signal.SIGKILL)
    await async_wait_until(lambda: "gave up" in (node.status.reason or ""), timeout=10, message=lambda: node.rec.text())
    reasons = [event[2] or "" for event in node.rec.events if event[1] is ServiceState.RESTARTING]
    assert len(reasons) == 2
    assert "restart 1 of 2 in 0.05s" in reasons[0]
    assert "restart 2 of 2 in 0.1s" in reasons[1], "the backoff doubles"
    assert "exited with code 5 before it was ready" in reasons[1], "the reason is the failed restart's"
    assert node.status.state is ServiceState.FAILED
    assert node.status.reason.endswith("gave up after 2 restarts")
    assert node.rec.events[-1][1] is ServiceState.FAILED
    assert node.status.restarts == 2
    assert sum("restart failed" in line and "cannot load" not in line for line in node.rec.lines) == 2
    assert not marked(mark)


@pytest.mark.parametrize("policy", ["on-failure", "always"])
async def test_clean_exit_restarts_only_with_always(managed, mark, policy) -> None:
    node = managed(fake={}, restart={"policy": policy, "backoff": 0.05})
    await node.start()
    pid = node.status.pid
    os.kill(pid, signal.SIGTERM)  # the fake exits 0 on SIGTERM
    if policy == "on-failure":
        await node.wait_state(ServiceState.FAILED, timeout=5)
        await asyncio.wait_for(node.node._watcher, timeout=5)
        # the recorded status (the one wait_state saw may be the momentary "exited" view of a
        # process reaped a moment before its code reached the supervising task)
        assert node.status.reason == "exited with code 0"
        assert ServiceState.RESTARTING not in node.rec.states()
    else:
        await async_wait_until(lambda: node.status.ready and node.status.pid not in (None, pid), timeout=10)
        assert node.status.restarts == 1


async def test_stop_during_backoff_is_prompt_and_leaves_nothing(managed, mark) -> None:
    node = managed(fake={}, restart={"policy": "always", "backoff": 30})
    await node.start()
    os.kill(node.status.pid, signal.SIGKILL)
    await node.wait_state(ServiceState.RESTARTING, timeout=5)
    started = time.monotonic()
    await node.stop()
    assert time.monotonic() - started < 2, "stop cancels the backoff"
    assert node.status.state is ServiceState.STOPPED
    assert not marked(mark)


async def test_stop_during_a_restart_that_is_not_ready_yet(managed, mark, tmp_path: Path) -> None:
    port = free_port()
    slow = tmp_path / "slow"
    fake = shlex.join(fake_vllm_argv(port))
    script = f"if [ -e {shlex.quote(str(slow))} ]; then exec {fake} --startup-delay-ms 60000; fi; exec {fake}"
    node = managed(command=script, port=port, readiness={"http": "/v1/models", "timeout": 60, "interval": 0.02},
                   restart={"policy": "always", "backoff": 0}, stop_timeout=5)
    await node.start()
    slow.touch()
    first = node.status.pid
    os.kill(first, signal.SIGKILL)
    await async_wait_until(lambda: node.status.state is ServiceState.STARTING and any("starting up" in line for line in node.rec.lines), timeout=10)
    started = time.monotonic()
    await node.stop()
    assert time.monotonic() - started < 3
    assert not marked(mark), "the restarted process is stopped too"


# -- through FlowHost (what `flowctl up` serves) --------------------------------------------


async def test_host_fails_the_run_in_flight_naming_the_service_and_recovers(tmp_path: Path, mark) -> None:
    """The leader of a `bash -c` wrapper is killed while a run streams from the server behind
    it (which keeps the connection open): the run fails within 1 s naming the service, new runs
    are refused with the reason, and the restarted service takes runs again."""
    port = free_port()
    server = fake_vllm_argv(port, tokens=100_000, token_delay_ms=5)
    flow_path = tmp_path / "flow.yml"
    flow_path.write_text(chat_flow_yaml(bash_wrapped(server), port, restart="on-failure", backoff=0.5, env={MARK_ENV: mark}))
    host = FlowHost(load_flow(flow_path), log=lambda line: None)
    await host.start()
    try:
        first_pid = host.readiness()["services"]["llm"]["pid"]
        run = host.prepare(None, {"prompt": "hi"})
        stream = host.stream(run)
        assert await anext(stream)
        killed_at = time.monotonic()
        os.kill(first_pid, signal.SIGKILL)  # the bash leader; the server goes on streaming
        with pytest.raises(RunError) as caught:
            async for _chunk in stream:
                pass
        assert time.monotonic() - killed_at < 1.0
        assert "service 'llm' went down: was killed by SIGKILL" in str(caught.value)
        assert run.record.status.value == "failed"

        readiness = host.readiness()  # down for the 0.5 s backoff at least
        assert not readiness["ready"] and "was killed by SIGKILL" in readiness["not_ready"]["llm"]
        with pytest.raises(ServiceError, match="service 'llm': not ready: was killed by SIGKILL"):
            host.prepare(None, {"prompt": "hi"})
        await async_wait_until(lambda: host.readiness()["ready"], timeout=10)
        assert host.readiness()["services"]["llm"]["pid"] != first_pid
        assert host.readiness()["services"]["llm"]["restarts"] == 1
        again = host.prepare(None, {"prompt": "hi"})
        stream = host.stream(again)
        assert await anext(stream)
        await stream.aclose()
    finally:
        await host.stop(drain_timeout=0)
    wait_gone(mark, 5)


def test_flowctl_run_fails_when_the_server_dies_mid_stream(flowctl_proc, tmp_path: Path, mark) -> None:
    port = free_port()
    flow = tmp_path / "flow.yml"
    flow.write_text(chat_flow_yaml(fake_vllm_argv(port, tokens=50, token_delay_ms=5, die_after_tokens=5), port))
    run = flowctl_proc("run", str(flow), "-i", "prompt=hi")
    out = run.read_stdout(2)
    assert out == "w0"
    code = run.wait(20)
    err = run.stderr()
    assert code == 3, err
    error_line = next(line for line in err.splitlines() if line.startswith("flowctl: error:"))
    assert "node 'chat'" in error_line and "mid-response" in error_line
    # the one-line cause names the service that died, not only the broken connection
    assert "service 'llm'" in error_line and "exited with code 3" in error_line, err
    assert "Traceback" not in err
    wait_gone(mark, 5)


# -- through `flowctl up` over HTTP ---------------------------------------------------------


def sse_events(response: httpx.Response):
    """(event, data) pairs of an SSE response, as they arrive."""
    return ((e.event, e.data) for e in iter_sse_events(response.iter_lines()))


def test_up_reports_the_dead_service_fails_runs_and_recovers(flowctl_up, mark) -> None:
    port = free_port()
    flow = chat_flow_yaml(fake_vllm_argv(port, tokens=100_000, token_delay_ms=5, quiet=True), port, restart="on-failure", backoff=1.0)
    up = flowctl_up(flow, env={MARK_ENV: mark})
    with up.client(timeout=10) as client:
        ready = client.get("/ready").json()
        pid = ready["services"]["llm"]["pid"]
        with client.stream("POST", "/workflows/chat/runs", json={"input": {"prompt": "hi"}}) as response:
            assert response.status_code == 200
            events = sse_events(response)
            assert next(events)[0] == "message"
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            for name, data in events:  # noqa: B007  (read after the loop)
                if name != "message":
                    break
            elapsed = time.monotonic() - killed_at
        assert name == "error", (name, data)
        assert elapsed < 1.0, f"the run in flight ends within 1 s of the death ({elapsed:.2f}s)"
        assert json.loads(data)["message"]

        # 503 naming the service (the connection may break a moment before the kernel reports
        # the exit), until the restart, after a 1 s backoff, brings it back
        down = wait_until(lambda: (r := client.get("/ready")).status_code == 503 and r, timeout=1.0, interval=0.01,
                          message="/ready did not turn 503")
        assert time.monotonic() - killed_at < 1.0
        assert "llm" in down.text and "was killed by SIGKILL" in down.text, down.text
        refused = client.post("/workflows/chat/runs", json={"input": {"prompt": "hi"}})
        assert refused.status_code == 503 and "llm" in refused.text, refused.text

        wait_until(lambda: client.get("/ready").status_code == 200, timeout=15, message=up.log_tail)
        back = client.get("/ready").json()["services"]["llm"]
        assert back["pid"] != pid and back["restarts"] == 1
        with client.stream("POST", "/workflows/chat/runs", json={"input": {"prompt": "hi"}}) as response:
            assert response.status_code == 200
            assert next(sse_events(response)) == ("message", "w0"), "the restarted server streams again"
