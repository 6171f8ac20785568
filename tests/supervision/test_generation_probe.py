"""A readiness probe that asks for a generation (POST with a JSON body), and the last exit
reason kept through restarts: a model server that loads but cannot generate, or that crashes
when it does (issue 12: llama.cpp killed by SIGSEGV on its first prompt), is never "ready",
and one that died and came back says why it went down."""

from __future__ import annotations

import time

import httpx
import pytest
from pydantic import ValidationError
from support.fake import DEFAULT_MODEL
from support.waiting import async_wait_until

from flowctl.engine.errors import ServiceError
from flowctl.nodes.base import ServiceState
from flowctl.nodes.process_start import ReadinessSpec

PROBE_BODY = {"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Are you there?"}], "max_tokens": 1}


def generation_probe(timeout: float = 15) -> dict:
    return {"http": "/v1/chat/completions", "method": "POST", "body": PROBE_BODY, "timeout": timeout, "interval": 0.02, "request_timeout": 5}


async def test_a_post_probe_sends_its_body_and_passes_when_the_server_generates(managed) -> None:
    node = managed(fake={}, readiness=generation_probe())
    await node.start()
    assert node.status.state is ServiceState.READY
    async with httpx.AsyncClient(timeout=5) as client:
        stats = (await client.get(f"http://127.0.0.1:{node.port}/stats")).json()
    assert stats["last_request"] == PROBE_BODY, "the probe's JSON body reached the server as written"
    assert stats["completed_streams"] >= 1 and stats["tokens_sent"] >= 1, "a token was generated before ready"


async def test_a_server_that_loads_but_cannot_generate_is_never_ready(managed, mark) -> None:
    # GET /v1/models says yes to this server: it has loaded...
    loaded = managed(fake={"fail_status": 500}, node_id="loaded")
    await loaded.start()
    assert loaded.status.state is ServiceState.READY
    await loaded.stop()
    # ...but every generation fails, and the generation probe sees that
    node = managed(fake={"fail_status": 500}, readiness=generation_probe(timeout=1.0))
    with pytest.raises(ServiceError) as caught:
        await node.start()
    assert f"not ready after 1s (POST http://127.0.0.1:{node.port}/v1/chat/completions)" in str(caught.value)
    assert node.status.state is ServiceState.FAILED


async def test_a_server_that_crashes_on_generation_fails_at_once_naming_the_signal(managed, mark) -> None:
    node = managed(fake={"die_after_tokens": 0, "die_signal": "SIGSEGV"}, readiness=generation_probe(timeout=60))
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        await node.start()
    assert time.monotonic() - started < 10, "a crash fails the start at once, not at the 60 s timeout"
    message = str(caught.value)
    assert "was killed by SIGSEGV before it was ready" in message
    assert "dying on purpose" in message, "the server's last words come with it"
    assert node.status.state is ServiceState.FAILED
    assert node.status.last_exit == "was killed by SIGSEGV before it was ready"


async def test_the_last_exit_reason_outlives_the_restart(managed) -> None:
    node = managed(fake={"die_after_tokens": 1, "die_signal": "SIGSEGV"},
                   restart={"policy": "on-failure", "backoff": 0.05, "max_restarts": 3})
    await node.start()
    assert node.status.last_exit is None
    first_pid = node.status.pid
    async with httpx.AsyncClient(timeout=10) as client:
        with pytest.raises(httpx.HTTPError):
            await client.post(f"http://127.0.0.1:{node.port}/v1/chat/completions", json=PROBE_BODY)
    # ready *again*: the death is seen a moment after the connection broke, so wait for the
    # restart itself (waiting for "ready" could return before the death was noticed)
    await async_wait_until(lambda: node.status.ready and node.status.restarts == 1, timeout=10)
    status = node.status
    assert status.pid != first_pid and status.restarts == 1
    assert status.reason is None, "ready again: nothing is wrong now"
    assert status.last_exit == "was killed by SIGSEGV", "but what the restart was for is kept"


@pytest.mark.parametrize(
    ("readiness", "error"),
    [
        ({"http": "/v1/completions", "body": {"prompt": "hi"}}, "a readiness `body` is sent with `method: POST`"),
        ({"tcp": True, "method": "POST"}, "`method: POST` needs an `http:` path"),
        ({"http": "/v1/completions", "method": "PUT"}, "method"),
    ],
)
def test_probe_spec_mistakes_are_named(readiness: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=error.replace("`", ".").replace("(", ".").replace(")", ".")):
        ReadinessSpec.model_validate(readiness)
