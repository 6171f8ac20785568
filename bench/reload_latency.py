#!/usr/bin/env python3
"""Hot-reload latency of `flowctl up`: from a save of the flow file to the first run that
reflects it.

    python bench/reload_latency.py [--samples 20] [--restarts 5]

Starts `flowctl up` (reload on) on a flow whose process-start node runs the fake vLLM server
(tests/servers/fake_vllm.py), then, `--samples` times per save style, changes the word that
the http-stream node's request body asks the fake server to echo back, saves, and polls runs
(`POST /api/workflows/chat/runs`, one after another, no pause) until one answers with the new
word. Save styles: `rename` (write a temp file, os.replace it over the flow) and `in-place`
(truncate and write). `--restarts` more samples edit the process-start command instead, which
restarts that process (its readiness probe is part of the time).

Prints p50 / p95 / max in ms of save-to-effect, and of the `reloaded FILE in N ms` that `up`
logs (read + parse + validate + compile + swap [+ restarts], after the debounce window).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.flows import chat_nodes, chat_url, server_node  # noqa: E402
from support.procs import free_port  # noqa: E402

FAKE = REPO / "tests" / "servers" / "fake_vllm.py"
RELOADED = "flowctl: reloaded "


def flow_yaml(port: int, word: str, tokens: int = 4) -> str:
    argv = [sys.executable, str(FAKE), "--port", str(port), "--quiet", "--tokens", str(tokens)]
    return (
        "version: 1\nname: reload-bench\nnodes:\n"
        + server_node("llm", argv, port, readiness_timeout=30, interval=0.02, stop_timeout=5)
        + chat_nodes(chat_url(port), needs="llm", content=f"echo: {word} ${{input.prompt}}")
        + "workflows:\n  chat: {output: reply, default: true}\n"
    )


def save(path: Path, text: str, style: str) -> None:
    if style == "rename":
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        with open(path, "w") as f:
            f.write(text)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, values: list[float]) -> str:
    return f"{name:<34} n={len(values):<3} p50 {statistics.median(values):7.1f}  p95 {pct(values, 0.95):7.1f}  max {max(values):7.1f}  (ms)"


class Bench:
    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.api_port = free_port()
        self.path = folder / "flow.yml"
        self.log_path = folder / "up.log"
        self.tokens = 4
        self.path.write_text(flow_yaml(self.port, "start"))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FLOWCTL_API_KEY", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowctl", "up", str(self.path), "--port", str(self.api_port), "--ui-port", "0"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=str(REPO),
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}/api", timeout=30.0)
        self.wait(lambda: "serving " in self.log() and self.http.get("/ready").status_code == 200, 60, "flowctl up did not serve")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"flowctl up exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            try:
                if predicate():
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} within {timeout:g}s:\n{self.log()[-3000:]}")
            time.sleep(0.002)  # polling interval

    def output(self) -> str | None:
        r = self.http.post("/workflows/chat/runs", json={"input": {"prompt": "p"}}, headers={"Accept": "application/json"})
        return r.json().get("output") if r.status_code == 200 else None

    def sample(self, word: str, style: str, tokens: int | None = None) -> tuple[float, float]:
        """Save a flow that echoes `word`; return (save-to-effect ms, logged reload ms)."""
        if tokens is not None:
            self.tokens = tokens
        reloads_before = self.log().count(RELOADED)
        text = flow_yaml(self.port, word, self.tokens)
        start = time.perf_counter()
        save(self.path, text, style)
        self.wait(lambda: (self.output() or "").startswith(word + " "), 60, f"no run showed '{word}'")
        effect = (time.perf_counter() - start) * 1000
        self.wait(lambda: self.log().count(RELOADED) > reloads_before, 10, "no reload logged")
        line = [line for line in self.log().splitlines() if line.startswith(RELOADED)][-1]
        logged = float(line.split(" in ", 1)[1].split(" ms", 1)[0])
        return effect, logged

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20, help="samples per save style (default 20)")
    parser.add_argument("--restarts", type=int, default=5, help="samples of a process-start edit (default 5; 0 skips)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowctl-reload-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            results: dict[str, tuple[list[float], list[float]]] = {}
            for style in ("rename", "in-place"):
                effects, logged = [], []
                for i in range(args.samples):
                    effect, reload_ms = bench.sample(f"{style}{i}", style)
                    effects.append(effect)
                    logged.append(reload_ms)
                results[f"body edit, {style} save"] = (effects, logged)
            if args.restarts:
                effects, logged = [], []
                for i in range(args.restarts):
                    effect, reload_ms = bench.sample(f"restart{i}", "rename", tokens=5 + i % 2)
                    effects.append(effect)
                    logged.append(reload_ms)
                assert bench.log().count("[llm] started pid") == 1 + args.restarts, "each command edit restarts llm once"
                results["process-start edit (restart)"] = (effects, logged)
        finally:
            bench.close()
    print(f"flowctl hot reload, {sys.platform}, python {sys.version.split()[0]}, debounce as `flowctl up` sets it")
    print("save -> first run that reflects it:")
    for name, (effects, _) in results.items():
        print("  " + summary(name, effects))
    print("`reloaded FILE in N ms` as logged by up (after the debounce window):")
    for name, (_, logged) in results.items():
        print("  " + summary(name, logged))
    return 0


if __name__ == "__main__":
    sys.exit(main())
