"""The browser the UI tests drive: Debian's /usr/bin/chromium through playwright, headless,
one per test module (each test opens its own context: no shared storage or cookies).
Not one per session: playwright's sync API keeps an asyncio loop running in the main thread
while it is open, and every async test that ran after it in the same process (under
pytest-xdist, files from other folders do) failed with "Runner.run() cannot be called from a
running event loop".
Without chromium (or playwright) every test here is skipped, saying why."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason="needs Debian's chromium (apt-get install chromium)")
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
