"""What the OpenAI facade and the Prometheus metrics cost on the stream: one `flowctl up` over
the fake vLLM server, three ways in, the same load client (bench/loadgen.py):

- ``direct``  the upstream itself (``POST /v1/chat/completions`` on the fake server): the floor;
- ``native``  flowctl's SSE route (``POST /api/workflows/chat/runs``);
- ``facade``  flowctl's OpenAI facade (``POST /v1/chat/completions``, model ``chat``).

Metrics are always on in `flowctl up` (every run of ``native`` and ``facade`` is counted), so
their cost is inside both flowctl numbers; the script also times, in process, what counting
adds per run (the two listener calls) and what the facade's chunk encoding adds per token
next to the native SSE encoding.

    python bench/facade_ratio.py                      # 32 concurrent streams of 64 tokens
    python bench/facade_ratio.py -c 32 --tokens 64 -n 256 --rounds 3 --json out.json

Contenders take turns round by round (rotated order), so drift of a noisy machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders as C
import loadgen


async def measure(targets: list[loadgen.Target], concurrency: int, requests: int, rounds: int, tokens: int, up: C.Contender) -> dict[str, Any]:
    """Each contender's cell, plus the CPU time flowctl (its process tree minus the upstream)
    spent per 1000 tokens while it ran (on a small machine the client competes for the same
    cores, so CPU per token is the steadier measure of what the server adds)."""
    expected = loadgen.expected_tokens(tokens)
    batches: dict[str, list[loadgen.Batch]] = {t.name: [] for t in targets}
    cpu: dict[str, float] = {t.name: 0.0 for t in targets}
    async with loadgen.new_client(max(concurrency * 2, 8)) as client:
        for target in targets:  # warm up: connections, caches
            await loadgen.run_batch(client, target, concurrency, concurrency, expected)
        for r in range(rounds):
            order = targets[r % len(targets):] + targets[: r % len(targets)]
            for target in order:
                before = up.engine_cpu()
                batches[target.name].append(await loadgen.run_batch(client, target, concurrency, requests, expected))
                cpu[target.name] += up.engine_cpu() - before
    cells = {name: loadgen.summarize(b) for name, b in batches.items()}
    for name, cell in cells.items():
        cell["flowctl_cpu_ms_per_1k_tokens"] = round(cpu[name] * 1e6 / cell["tokens"], 1) if cell["tokens"] else None
    return cells


def micro() -> dict[str, float]:
    """In process: µs per run of the metrics listeners; µs per token of each encoding."""
    from flowctl.engine.flow import load_flow
    from flowctl.engine.host import FlowHost
    from flowctl.engine.runs import RunRecord, RunStatus
    from flowctl.server.metrics import FlowMetrics
    from flowctl.server.openai_facade import ChunkEncoder
    from flowctl.server.sse import encode_chunk

    flow = load_flow(C.FLOWS / "flowctl.yml")

    async def listeners() -> float:
        host = FlowHost(flow, state_dir=Path(tempfile.mkdtemp()))
        FlowMetrics(host)
        record = RunRecord(id="r", workflow="chat")
        record.first_chunk_mono = record.started_mono + 0.01
        record.finished_mono = record.started_mono + 0.5
        record.chunks = 64
        data = {"run": record}

        def one_run() -> None:
            record.status = RunStatus.RUNNING
            host._emit("run.started", data)
            record.status = RunStatus.SUCCEEDED
            host._emit("run.finished", data)

        n = 20000
        seconds = min(timeit.repeat(one_run, number=n, repeat=5)) / n
        await host.http.aclose()
        return seconds

    per_run = asyncio.run(listeners())
    encoder = ChunkEncoder("chatcmpl-0123456789abcdef", "chat", 1700000000)
    token = " w42"
    n = 200000
    facade = min(timeit.repeat(lambda: encoder.content(token), number=n, repeat=5)) / n
    native = min(timeit.repeat(lambda: encode_chunk(42, token), number=n, repeat=5)) / n
    return {"metrics_us_per_run": round(per_run * 1e6, 2), "facade_encode_us_per_token": round(facade * 1e6, 3), "native_encode_us_per_token": round(native * 1e6, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--concurrency", type=int, default=32)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--token-delay-ms", type=float, default=0.0)
    p.add_argument("-n", "--requests", type=int, default=256, help="requests per contender per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="write the results here too")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facade-ratio-") as tmp:
        # the benchmark's own flowctl contender: bench/flows/flowctl.yml over the fake upstream
        up = C.Contender("flowctl", "flowctl", "flowctl", Path(tmp))
        try:
            up.start(C.Mode("facade", a.tokens, a.token_delay_ms))
            base = up.base
            targets = [
                loadgen.openai_target("direct", f"http://127.0.0.1:{up.upstream_port}"),
                loadgen.flowctl_target("native", base),
                loadgen.openai_target("facade", base, model="chat"),
            ]
            cells = asyncio.run(measure(targets, a.concurrency, a.requests, a.rounds, a.tokens, up))
            runs = httpx.get(base + "/metrics", timeout=5).text
        finally:
            up.stop()
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in runs.splitlines() if line.startswith("flowctl_runs_total{"))
    result = {
        "setup": {"concurrency": a.concurrency, "tokens": a.tokens, "token_delay_ms": a.token_delay_ms, "requests_per_round": a.requests, "rounds": a.rounds, "cpus": os.cpu_count()},
        "cells": cells,
        "ratios": {
            "facade/native tokens_per_s": round(cells["facade"]["tokens_per_s"] / cells["native"]["tokens_per_s"], 3),
            "native/direct tokens_per_s": round(cells["native"]["tokens_per_s"] / cells["direct"]["tokens_per_s"], 3),
            "facade/direct tokens_per_s": round(cells["facade"]["tokens_per_s"] / cells["direct"]["tokens_per_s"], 3),
            "facade/native ttft_p50": round(cells["facade"]["ttft_p50_ms"] / cells["native"]["ttft_p50_ms"], 3),
            "facade/native flowctl_cpu_per_token": round(cells["facade"]["flowctl_cpu_ms_per_1k_tokens"] / cells["native"]["flowctl_cpu_ms_per_1k_tokens"], 3),
        },
        "runs_counted_by_metrics": counted,
        "micro": micro(),
    }
    print(f"{'':8} {'tokens/s':>10} {'ttft p50 ms':>12} {'ttft p95 ms':>12} {'total p50 ms':>13} {'errors':>7} {'flowctl cpu ms/1k tok':>22}")
    for name, cell in cells.items():
        print(f"{name:8} {cell['tokens_per_s']:>10} {cell['ttft_p50_ms']:>12} {cell['ttft_p95_ms']:>12} {cell['total_p50_ms']:>13} {cell['errors']:>7} {cell['flowctl_cpu_ms_per_1k_tokens']!s:>22}   rounds {cell['tokens_per_s_rounds']}")
    for key, ratio in result["ratios"].items():
        print(f"{key}: {ratio}")
    print(f"runs counted by /metrics: {counted:g}; micro: {result['micro']}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2))
    return 0 if all(cell["errors"] == 0 for cell in cells.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
