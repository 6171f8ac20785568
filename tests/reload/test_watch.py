"""Hot reload in-process: `watch_flow` over a real `FlowHost` whose process-start nodes run the
fake vLLM server, edited the way editors save (in place, temp + rename, move away + write).

"Exactly one reload" is checked without sleeping: after the save under test has reloaded,
a second, different save (a sentinel) is made and waited for; saves are handled in order,
so a spurious extra reload would be logged before the sentinel's.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.flows import chat_nodes, chat_url, server_node
from support.paths import FAKE_VLLM
from support.procs import free_port, pid_alive
from support.waiting import async_wait_until

from flowctl.engine.errors import ServiceError
from flowctl.engine.flow import load_flow, load_flow_text
from flowctl.engine.host import FlowHost
from flowctl.engine.reload import watch_flow

pytestmark = pytest.mark.timeout(90)

PY = sys.executable


def flow_yaml(
    ports: tuple[int, int],
    marker: Path,
    *,
    word: str = "alpha",
    words: int = 1,
    delay_ms: int = 0,
    fake_args: tuple[str, ...] = (),
    other_args: tuple[str, ...] = (),
    setup_tag: str = "v1",
    fake_timeout: float = 20,
    extra: str = "",
) -> str:
    """Two managed fake servers: `fake` serves workflow `a`; `other` (after env-setup `setup`,
    which appends a line to `marker` each time it really runs) serves workflow `b`. Each reply
    echoes `word` `words` times, then the prompt."""
    echo = " ".join([word] * words)

    def argv(port: int, args: tuple[str, ...]) -> list[str]:
        return [PY, str(FAKE_VLLM), "--port", str(port), "--quiet", *args]

    setup_cmd = repr([PY, "-c", f"open({str(marker)!r}, 'a').write('{setup_tag}\\n')"])
    return (
        "version: 1\nname: reload-test\nnodes:\n"
        + server_node("fake", argv(ports[0], fake_args), ports[0], description="the first fake server", readiness_timeout=fake_timeout, interval=0.05)
        + f"  setup:\n    type: env-setup\n    venv: false\n    commands: [{setup_cmd}]\n"
        + server_node("other", argv(ports[1], other_args), ports[1], needs=["setup"], interval=0.05)
        + chat_nodes(chat_url(ports[0]), needs="fake", content=f"echo: {echo} ${{input.prompt | p}}", headers={"x-fake-token-delay-ms": str(delay_ms)})
        + chat_nodes(chat_url(ports[1]), needs="other", chat="chat_b", reply="reply_b", content="echo: b ${input.prompt | p}")
        + f"{extra}workflows:\n  a: {{output: reply, default: true}}\n  b: {{output: reply_b}}\n"
    )


@dataclass
class Served:
    host: FlowHost
    path: Path
    marker: Path
    ports: tuple[int, int]
    log: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    watcher: asyncio.Task[None] | None = None

    def yaml(self, **kwargs) -> str:
        return flow_yaml(self.ports, self.marker, **kwargs)

    # -- the three ways editors save ---------------------------------------------------------

    def write(self, text: str) -> None:
        """In place (truncate, then write)."""
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def replace(self, text: str) -> None:
        """Write a temp file beside it, then rename it over the flow (atomic)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)

    def move_and_write(self, text: str) -> None:
        """Vim without backupcopy: move the flow away to a backup, then write a new file."""
        os.replace(self.path, self.path.with_name(self.path.name + "~"))
        self.path.write_text(text, encoding="utf-8")

    # -- observing -----------------------------------------------------------------------

    def reloads(self) -> list[str]:
        return [line for line in self.log if line.startswith("reload")]

    async def wait_reloads(self, n: int, timeout: float = 15.0) -> list[str]:
        await async_wait_until(lambda: len(self.reloads()) >= n, timeout=timeout, message=lambda: "\n".join(self.log[-30:]))
        return self.reloads()

    async def sentinel(self, word: str = "sentinel", **kwargs) -> None:
        """A different save, waited for until it has taken effect."""
        before = len(self.reloads())
        self.write(self.yaml(word=word, **kwargs))
        await self.wait_reloads(before + 1)
        assert (await self.text()).startswith(word)

    def pid(self, node: str) -> int | None:
        return self.host.readiness()["services"][node]["pid"]

    async def text(self, workflow: str | None = None, prompt: str = "p") -> str:
        run = self.host.prepare(workflow, {"prompt": prompt})
        return "".join([str(chunk) async for chunk in self.host.stream(run)])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    folder = tmp_path / "flows"
    folder.mkdir()
    served = Served(host=None, path=folder / "flow.yml", marker=tmp_path / "setup-runs.txt", ports=(free_port(), free_port()))  # type: ignore[arg-type]
    served.write(served.yaml())
    served.host = FlowHost(load_flow(served.path), state_dir=tmp_path / "state", log=lambda line: served.log.append(str(line)))
    await served.host.start()
    served.watcher = asyncio.create_task(watch_flow(served.host, served.path, stop=served.stop, log=served.log.append))
    try:
        yield served
    finally:
        served.stop.set()
        await asyncio.wait_for(served.watcher, timeout=5)
        await served.host.stop()


def restarted(line: str) -> str:
    match = re.search(r"\(restarted: ([^)]*)\)", line)
    assert match, line
    return match.group(1)


# -- body edits ------------------------------------------------------------------------------


async def test_in_place_body_edit_restarts_nothing(served: Served) -> None:
    assert await served.text() == "alpha p"
    pids = served.pid("fake"), served.pid("other")
    served.write(served.yaml(word="beta"))
    [line] = await served.wait_reloads(1)
    assert re.fullmatch(rf"reloaded {re.escape(str(served.path))} in \d+ ms \(restarted: none\)", line)
    assert await served.text() == "beta p"
    assert (served.pid("fake"), served.pid("other")) == pids
    assert served.marker.read_text() == "v1\n"  # env-setup ran once, at start
    assert served.host.reloads == {"ok": 1, "error": 0}


async def test_description_edit_restarts_nothing(served: Served) -> None:
    pid = served.pid("fake")
    served.write(served.yaml().replace("the first fake server", "still the first fake server"))
    [line] = await served.wait_reloads(1)
    assert restarted(line) == "none"
    assert served.pid("fake") == pid


async def test_edit_during_a_long_stream(served: Served) -> None:
    """The run in flight finishes on its own graph; the next run sees the edit."""
    served.write(served.yaml(word="old", words=30, delay_ms=30))
    await served.wait_reloads(1)
    run = served.host.prepare(None, {"prompt": "p"})
    stream = served.host.stream(run)
    chunks = [str(await anext(stream))]
    assert chunks == ["old"]
    served.write(served.yaml(word="new", words=3, delay_ms=0))
    await served.wait_reloads(2)
    assert await served.text() == "new new new p"  # while the long one is still streaming
    chunks += [str(chunk) async for chunk in stream]
    assert "".join(chunks) == " ".join(["old"] * 30) + " p"
    assert run.record.status.value == "succeeded"


async def test_same_content_save_reloads_nothing(served: Served) -> None:
    served.write(served.yaml())  # same bytes
    served.path.touch()
    await served.sentinel()
    assert len(served.reloads()) == 1


# -- editor save patterns ---------------------------------------------------------------------


async def test_rename_based_save_reloads_once(served: Served) -> None:
    served.replace(served.yaml(word="renamed"))
    await served.wait_reloads(1)
    assert await served.text() == "renamed p"
    await served.sentinel()
    assert len(served.reloads()) == 2
    assert not any("failed" in line for line in served.reloads())


async def test_move_away_then_write_is_not_an_error(served: Served) -> None:
    """The file is missing for a moment: not reported, one reload."""
    served.move_and_write(served.yaml(word="vim"))
    await served.wait_reloads(1)
    assert await served.text() == "vim p"
    await served.sentinel()
    assert len(served.reloads()) == 2
    assert served.host.reloads["error"] == 0


async def test_burst_of_writes_is_one_reload(served: Served) -> None:
    final = served.yaml(word="burst")
    served.write(final[: len(final) // 2])  # a half-written file: invalid on its own
    served.write("")
    served.replace(final[:10])
    served.write(final)
    served.path.touch()
    await served.wait_reloads(1)
    assert await served.text() == "burst p"
    await served.sentinel()
    assert len(served.reloads()) == 2
    assert served.host.reloads == {"ok": 2, "error": 0}


# -- invalid edits ------------------------------------------------------------------------------


async def test_broken_edit_then_fix(served: Served) -> None:
    pid = served.pid("fake")
    broken = served.yaml(word="broken").replace("    port: ", "    prot: ", 1)
    bad_line = broken.splitlines().index(next(line for line in broken.splitlines() if "prot:" in line)) + 1
    served.write(broken)
    [line] = await served.wait_reloads(1)
    match = re.fullmatch(rf"reload failed, still serving the last good flow: {re.escape(str(served.path))}:(\d+):(\d+): (.+)", line)
    assert match, line
    assert int(match.group(1)) == bad_line and "prot" in match.group(3)
    ready = served.host.readiness()
    assert ready["ready"] is True  # a warning, not a failure
    assert ready["reload_error"].startswith(f"{served.path}:{bad_line}:")
    assert await served.text() == "alpha p"  # the last good graph still serves
    assert served.pid("fake") == pid

    served.write(served.yaml(word="fixed"))
    [_, line] = await served.wait_reloads(2)
    assert restarted(line) == "none"
    assert "reload_error" not in served.host.readiness()
    assert await served.text() == "fixed p"
    assert served.pid("fake") == pid
    assert served.host.reloads == {"ok": 1, "error": 1}


async def test_deleted_file_is_reported_and_recreating_it_recovers(served: Served) -> None:
    served.path.unlink()
    [line] = await served.wait_reloads(1)
    assert "reload failed" in line and "gone" in line
    assert await served.text() == "alpha p"
    served.write(served.yaml())  # the same content as the last good flow: still a reload
    [_, line] = await served.wait_reloads(2)
    assert restarted(line) == "none"
    assert "reload_error" not in served.host.readiness()


async def test_yaml_syntax_error_has_position(served: Served) -> None:
    served.write("version: 1\nnodes: [\n")
    [line] = await served.wait_reloads(1)
    assert re.search(rf"{re.escape(str(served.path))}:\d+:\d+: invalid YAML", line), line


# -- service edits ------------------------------------------------------------------------------


async def test_process_command_edit_restarts_only_that_process(served: Served) -> None:
    fake, other = served.pid("fake"), served.pid("other")
    served.replace(served.yaml(fake_args=("--tokens", "9")))
    [line] = await served.wait_reloads(1, timeout=30)
    assert restarted(line) == "fake"
    assert served.pid("fake") not in (None, fake)
    assert not pid_alive(fake)
    assert served.pid("other") == other
    assert served.marker.read_text() == "v1\n"  # its env-setup did not run again
    assert await served.text() == "alpha p"
    assert await served.text("b") == "b p"


async def test_env_setup_edit_reruns_it_and_restarts_its_dependents(served: Served) -> None:
    fake, other = served.pid("fake"), served.pid("other")
    served.write(served.yaml(setup_tag="v2"))
    [line] = await served.wait_reloads(1, timeout=30)
    assert restarted(line) == "setup, other"
    assert served.marker.read_text() == "v1\nv2\n"
    assert served.pid("fake") == fake
    assert served.pid("other") not in (None, other)
    assert await served.text("b") == "b p"


async def test_failed_restart_keeps_serving_and_reports(served: Served) -> None:
    other = served.pid("other")
    served.write(served.yaml(fake_args=("--exit-before-ready", "2")))
    [line] = await served.wait_reloads(1, timeout=30)
    assert restarted(line) == "fake"
    assert "not ready: fake: exited with code 2 before it was ready" in line
    ready = served.host.readiness()
    assert ready["ready"] is False and "exited with code 2" in ready["not_ready"]["fake"]
    assert ready["services"]["fake"]["state"] == "failed"
    with pytest.raises(ServiceError):
        served.host.prepare("a", {"prompt": "p"})
    assert await served.text("b") == "b p"  # what does not need it keeps serving
    assert served.pid("other") == other

    # a body-only edit does not retry it (its spec did not change) ...
    served.write(served.yaml(fake_args=("--exit-before-ready", "2"), word="still"))
    [*_, line] = await served.wait_reloads(2)
    assert restarted(line) == "none"
    # ... fixing its spec does
    served.write(served.yaml(word="back"))
    [*_, line] = await served.wait_reloads(3, timeout=30)
    assert restarted(line) == "fake" and "not ready" not in line
    assert await served.text() == "back p"
    assert served.host.readiness()["ready"] is True


async def test_a_newer_save_supersedes_a_slow_restart(served: Served) -> None:
    """A process that never gets ready must not hold back the fix until its timeout."""
    served.write(served.yaml(fake_args=("--startup-delay-ms", "60000"), fake_timeout=60))
    await async_wait_until(lambda: any("[fake] started pid" in line for line in served.log[-20:]) and served.host.readiness()["services"]["fake"]["state"] == "starting", timeout=15)
    served.write(served.yaml(word="fast"))
    lines = await served.wait_reloads(1, timeout=20)
    await async_wait_until(lambda: any("reloaded" in line for line in served.reloads()), timeout=20)
    assert any("superseded" in line for line in served.reloads()), lines
    line = next(line for line in served.reloads() if "reloaded" in line)
    assert restarted(line) == "fake" and "not ready" not in line
    assert await served.text() == "fast p"


async def test_removed_service_is_stopped(served: Served) -> None:
    other = served.pid("other")
    text = served.yaml()
    start, end = text.index("  setup:\n"), text.index("  chat:\n")
    text = text[:start] + text[end:]
    start, end = text.index("  chat_b:\n"), text.index("workflows:")
    text = text[:start] + text[end:]
    served.write(text.replace("  b: {output: reply_b}\n", ""))
    [line] = await served.wait_reloads(1)
    assert restarted(line) == "none"
    await async_wait_until(lambda: not pid_alive(other), timeout=10)
    assert list(served.host.readiness()["services"]) == ["fake"]
    assert served.host.readiness()["ready"] is True


# -- the watcher itself ------------------------------------------------------------------------


async def test_stop_returns_promptly(served: Served) -> None:
    assert served.watcher is not None
    served.stop.set()
    await asyncio.wait_for(asyncio.shield(served.watcher), timeout=1.0)


async def test_cancel_returns_promptly(served: Served) -> None:
    assert served.watcher is not None
    served.watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(served.watcher), timeout=1.5)
    served.watcher = asyncio.create_task(asyncio.sleep(0))


def test_fingerprints_ignore_body_description_and_needs_order(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    base = load_flow_text(flow_yaml((1, 2), marker), "f.yml").service_fingerprints
    body = load_flow_text(flow_yaml((1, 2), marker, word="zzz", delay_ms=5), "f.yml").service_fingerprints
    assert body == base
    described = load_flow_text(flow_yaml((1, 2), marker).replace("the first fake server", "x"), "f.yml")
    assert described.service_fingerprints == base
    cmd = load_flow_text(flow_yaml((1, 2), marker, fake_args=("--tokens", "3")), "f.yml").service_fingerprints
    assert cmd["fake"] != base["fake"] and cmd["setup"] == base["setup"] and cmd["other"] == base["other"]
    setup = load_flow_text(flow_yaml((1, 2), marker, setup_tag="v9"), "f.yml").service_fingerprints
    assert setup["fake"] == base["fake"] and setup["setup"] != base["setup"] and setup["other"] != base["other"]
