"""What a Ray-placed replica adds to a run over a local one: one `flowctl up` serving two
workflows over the same fake vLLM server, the same load client (bench/loadgen.py) for both:

- ``local``  http-stream `service: here`, a process-start replica on this machine;
- ``ray``    http-stream `service: there`, the same replica placed by Ray
             (`placement: {engine: ray}`) on a one-node Ray cluster this script starts on
             loopback (tests/support/ray_cluster.py) and stops by pid.

Tokens do not go through Ray (http-stream connects to the replica's URL), so what differs is
where the server runs (a Ray worker's child, beside Ray's own processes) and nothing on the
request path. Reported as ratios ray/local of the same run, at each concurrency asked for;
the two take turns round by round, so a noisy machine's drift is shared. Needs
`pip install 'flowctl[ray]'`.

    python bench/ray_replica.py                       # concurrency 1 and 16, 64 tokens, unpaced
    python bench/ray_replica.py -c 1 -c 32 -n 128 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders as C  # also puts tests/ on the path, for support.*
import loadgen
from replicas import cpu_name, free_port, ratio, wait_ready
from support.ray_cluster import RayCluster, ray_missing


def flow_yaml(address: str, tokens: int, delay_ms: float) -> str:
    argv = [sys.executable, str(C.FAKE), "--port", "${replica.port}", "--quiet", "--tokens", str(tokens), "--token-delay-ms", str(delay_ms)]

    def service(name: str, placement: dict[str, Any]) -> str:
        return (
            f"  {name}:\n    type: process-start\n    command: {json.dumps(argv)}\n    port: auto\n    placement: {json.dumps(placement)}\n"
            "    readiness: {http: /v1/models, timeout: 60, interval: 0.05}\n    restart: never\n"
        )

    def chat(name: str, service_id: str) -> str:
        body = {"model": loadgen.MODEL, "messages": [{"role": "user", "content": "${input.prompt}"}], "stream": True}
        return (
            f"  {name}-gen:\n    type: http-stream\n    service: {service_id}\n    path: /v1/chat/completions\n"
            f"    body: {json.dumps(body)}\n    output: {json.dumps('${response[].choices[0].delta.content}')}\n"
            f"  {name}:\n    type: sse-sink\n    source: {json.dumps('${nodes.' + name + '-gen.output as stream/text}')}\n"
        )

    services = service("here", {"engine": "local"}) + service("there", {"engine": "ray", "address": address, "resources": {"slot": 1}})
    return "version: 1\nname: ray-replica-bench\nserver: {max_concurrency: 256, max_queue: 1024}\nnodes:\n" + services + chat("local", "here") + chat("ray", "there")


async def measure(base: str, concurrency: int, requests: int, rounds: int, tokens: int) -> dict[str, Any]:
    targets = [loadgen.flowctl_target("local", base, workflow="local"), loadgen.flowctl_target("ray", base, workflow="ray")]
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--concurrency", type=int, action="append", help="streams at once (repeatable; default 1 and 16)")
    p.add_argument("-n", "--requests", type=int, default=64, help="requests per round per contender")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--delay-ms", type=float, default=0.0, help="the fake's pause between tokens")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if ray_missing():
        raise SystemExit(ray_missing())
    levels = args.concurrency or [1, 16]

    work = Path(tempfile.mkdtemp(prefix="flowctl-ray-bench-"))
    ray_root = Path(tempfile.mkdtemp(prefix="frb", dir="/tmp"))  # short: Ray's Unix socket paths
    cluster = RayCluster.start(ray_root, [{"slot": 1}])
    up = None
    try:
        flow = work / "flow.yml"
        flow.write_text(flow_yaml(cluster.address, args.tokens, args.delay_ms))
        port = free_port()
        up = C.Proc([sys.executable, "-m", "flowctl", "up", str(flow), "--port", str(port), "--ui-port", "0", "--no-reload"], work / "up.log")
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/api", up)
        cells = {c: asyncio.run(measure(base, c, args.requests, args.rounds, args.tokens)) for c in levels}
    finally:
        if up is not None:
            up.stop()
        cluster.stop()
        shutil.rmtree(ray_root, ignore_errors=True)
    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "command": "python bench/ray_replica.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": vars(args) | {"json": str(args.json) if args.json else None, "concurrency": levels},
        "cells": {str(c): cell for c, cell in cells.items()},
        "ray_over_local": {},
    }
    print(f"CPU: {report['cpu']}")
    print(f"{'c':>3} {'':5} {'errors':>6} {'ttft p50 ms':>12} {'ttft p95 ms':>12} {'total p50 ms':>13} {'tokens/s':>10}")
    errors = 0
    for c, cell in cells.items():
        local, ray = cell["local"], cell["ray"]
        for name, row in cell.items():
            errors += row["errors"]
            print(f"{c:>3} {name:5} {row['errors']:>6} {row['ttft_p50_ms']!s:>12} {row['ttft_p95_ms']!s:>12} {row['total_p50_ms']!s:>13} {row['tokens_per_s']!s:>10}")
        report["ray_over_local"][str(c)] = {
            "ttft_p50": ratio(ray["ttft_p50_ms"], local["ttft_p50_ms"]),
            "ttft_p95": ratio(ray["ttft_p95_ms"], local["ttft_p95_ms"]),
            "total_p50": ratio(ray["total_p50_ms"], local["total_p50_ms"]),
            "tokens_per_s": ratio(ray["tokens_per_s"], local["tokens_per_s"]),
        }
        print(f"c={c} ray/local:", json.dumps(report["ray_over_local"][str(c)]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
