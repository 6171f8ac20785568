"""Shared fixtures. Helpers live in tests/support/ (import them as ``support.<module>``,
the fake server as ``servers.fake_vllm``): this file only wires them into pytest.

Tests start real processes and servers on 127.0.0.1 and wait on conditions with deadlines
(``support.waiting.wait_until`` / ``async_wait_until``), never on bare sleeps.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# tests/ is the import root for ``support`` and ``servers`` whatever pytest's import mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from supervision.supervision_support import kill_marked  # noqa: E402
from support.fake import FakeServer, start_fake_vllm  # noqa: E402
from support.paths import FAKE_VLLM, PYTHON, REPO_ROOT  # noqa: E402,F401
from support.procs import free_port, pid_alive, port_in_use  # noqa: E402,F401
from support.waiting import async_wait_until, wait_until  # noqa: E402,F401


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Iterator[Callable[..., FakeServer]]:
    """Factory: ``fake_vllm(**flags) -> FakeServer``, a fake vLLM subprocess that is ready
    (``GET /v1/models`` answers 200) unless ``wait_ready=False``. Keyword flags become CLI
    flags (``token_delay_ms=5`` -> ``--token-delay-ms 5``); also ``port=``, ``timeout=``,
    ``env=``, ``extra_args=``. Every server started is stopped (process group SIGTERM, then
    SIGKILL) at teardown, pass or fail."""
    servers: list[FakeServer] = []

    def start(**kwargs: Any) -> FakeServer:
        server = start_fake_vllm(tmp_path / f"fake-vllm-{len(servers)}", **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(OSError):
            server.stop(grace=2.0)


@pytest.fixture
def flowctl_up(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``flowctl_up(flow_text_or_path, extra_args=(), **kw) -> UpHandle``, a real
    ``flowctl up`` subprocess on free ports, ready (``/api/ready`` 200) unless
    ``wait_ready=False``. See tests/support/flowctl_up.py (``fake_flow_yaml`` writes a flow
    over the fake vLLM server). Every one started is SIGTERMed (then killed) at teardown."""
    from support.flowctl_up import UpFactory

    factory = UpFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def mark() -> Iterator[str]:
    """A fresh marker for the processes a test makes flowctl start (it goes into their
    environment or argv); whatever still carries it at teardown is SIGKILLed."""
    value = uuid.uuid4().hex
    try:
        yield value
    finally:
        kill_marked(value)
