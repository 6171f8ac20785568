"""What balancing over replicas changes on the stream: one `flowctl up` serving two workflows
over the fake vLLM server, the same load client (bench/loadgen.py) for both:

- ``one``  http-stream `service: solo`, a process-start node with one replica (`port: auto`);
- ``two``  http-stream `service: pair`, the same node with `replicas: 2` (least in flight).

Both go through the same code (the pool, the pick, the release), so the difference is what a
second replica brings: on a model server that is busy (here the fake's CPU per token, or its
pacing `--token-delay-ms`) the load is halved per replica. Reported as ratios two/one of the
same run; contenders take turns round by round (rotated order), so a noisy machine's drift is
shared (an even number of rounds, so each goes first as often: with 3 rounds the side that
went first twice had the better time to first token in an A/A control). Timings are this
machine's: see the CPU line of the output.

    python bench/replicas.py                                  # 16 streams of 64 tokens, unpaced
    python bench/replicas.py -c 32 --tokens 64 --delay-ms 5 -n 256 --rounds 4 --json out.json
    python bench/replicas.py --pair-replicas 1      # A/A: both sides one replica (ratios ~1)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders as C
import loadgen


def flow_yaml(tokens: int, delay_ms: float, pair: int = 2) -> str:
    argv = [sys.executable, str(C.FAKE), "--port", "${replica.port}", "--quiet", "--tokens", str(tokens), "--token-delay-ms", str(delay_ms)]

    def service(name: str, replicas: int) -> str:
        return (
            f"  {name}:\n    type: process-start\n    command: {json.dumps(argv)}\n    port: auto\n    replicas: {replicas}\n"
            '    readiness: {http: /v1/models, timeout: 60, interval: 0.05}\n    restart: never\n'
        )

    def chat(name: str, service_id: str) -> str:
        body = {"model": loadgen.MODEL, "messages": [{"role": "user", "content": "${input.prompt}"}], "stream": True}
        return (
            f"  {name}-gen:\n    type: http-stream\n    service: {service_id}\n    path: /v1/chat/completions\n"
            f"    body: {json.dumps(body)}\n    output: {json.dumps('${response[].choices[0].delta.content}')}\n"
            f"  {name}:\n    type: sse-sink\n    source: {json.dumps('${nodes.' + name + '-gen.output as stream/text}')}\n"
        )

    return "version: 1\nname: replicas-bench\nserver: {max_concurrency: 256, max_queue: 1024}\nnodes:\n" + service("solo", 1) + service("pair", pair) + chat("one", "solo") + chat("two", "pair")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(api: str, up: C.Proc, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not up.alive():
            raise SystemExit(f"flowctl up exited:\n{up.tail()}")
        try:
            if httpx.get(f"{api}/ready", timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # a poll interval in a benchmark script, not a test
    raise SystemExit(f"flowctl up not ready after {timeout:g}s:\n{up.tail()}")


async def measure(base: str, concurrency: int, requests: int, rounds: int, tokens: int) -> dict[str, Any]:
    targets = [loadgen.flowctl_target("one", base, workflow="one"), loadgen.flowctl_target("two", base, workflow="two")]
    expected = loadgen.expected_tokens(tokens)
    batches: dict[str, list[loadgen.Batch]] = {t.name: [] for t in targets}
    async with loadgen.new_client(max(concurrency * 2, 8)) as client:
        for target in targets:  # warm up: connections, caches
            await loadgen.run_batch(client, target, concurrency, concurrency, expected)
        for r in range(rounds):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            for target in order:
                batches[target.name].append(await loadgen.run_batch(client, target, concurrency, requests, expected))
    return {name: loadgen.summarize(b) for name, b in batches.items()}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--concurrency", type=int, default=16)
    p.add_argument("-n", "--requests", type=int, default=128, help="requests per round per contender")
    p.add_argument("--rounds", type=int, default=4, help="an even number: each side goes first as often")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--delay-ms", type=float, default=0.0, help="the fake's pause between tokens")
    p.add_argument("--pair-replicas", type=int, default=2, help="replicas behind `two` (1: an A/A control of the method)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="flowctl-replicas-bench-"))
    flow = work / "flow.yml"
    flow.write_text(flow_yaml(args.tokens, args.delay_ms, args.pair_replicas))
    port = free_port()
    up = C.Proc([sys.executable, "-m", "flowctl", "up", str(flow), "--port", str(port), "--ui-port", "0", "--no-reload"], work / "up.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api", up)
        cells = asyncio.run(measure(base, args.concurrency, args.requests, args.rounds, args.tokens))
    finally:
        up.stop()
    one, two = cells["one"], cells["two"]
    report = {
        "cpu": cpu_name(),
        "command": "python bench/replicas.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "cells": cells,
        "two_over_one": {
            "ttft_p50": ratio(two["ttft_p50_ms"], one["ttft_p50_ms"]),
            "ttft_p95": ratio(two["ttft_p95_ms"], one["ttft_p95_ms"]),
            "total_p50": ratio(two["total_p50_ms"], one["total_p50_ms"]),
            "tokens_per_s": ratio(two["tokens_per_s"], one["tokens_per_s"]),
        },
    }
    print(f"CPU: {report['cpu']}")
    print(f"{'':5} {'errors':>6} {'ttft p50 ms':>12} {'ttft p95 ms':>12} {'total p50 ms':>13} {'tokens/s':>10}")
    for name, cell in cells.items():
        print(f"{name:5} {cell['errors']:>6} {cell['ttft_p50_ms']!s:>12} {cell['ttft_p95_ms']!s:>12} {cell['total_p50_ms']!s:>13} {cell['tokens_per_s']!s:>10}")
    print("two/one:", json.dumps(report["two_over_one"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if one["errors"] == 0 and two["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
