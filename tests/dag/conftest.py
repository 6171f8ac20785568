"""One fake vLLM server for the module's tests (each test tags its requests, so the
upstream's log tells them apart); tests that change the server's own flags start their own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fake import FakeServer, start_fake_vllm


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeServer]:
    server = start_fake_vllm(Path(tmp_path_factory.mktemp("upstream")), quiet=True)
    yield server
    with contextlib.suppress(OSError):
        server.stop(grace=2.0)
