#!/usr/bin/env python3
"""The engine's own CPU per 1000 tokens: `FlowHost.stream` at N concurrent streams against the
fake upstream, with no HTTP server in front (so neither uvicorn nor the load client is
counted), measured as this process's CPU time (`time.process_time`), which a busy neighbour
inflates far less than wall-clock throughput.

    python bench/engine_cpu.py                          # this tree
    python bench/engine_cpu.py --base /tmp/flowctl-base --rounds 5
                                                        # A/B: this tree and BASE, alternating

BASE is a copy of the package laid out as installed (`flowctl/`, `flowctl/engine/`, ...), as
for `bench/run.py --variant`. Each measurement runs in a fresh process (the tree first on its
PYTHONPATH); the medians over the rounds are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


async def measure(streams: int, runs: int, tokens: int, flush: bool) -> tuple[float, float]:
    """(CPU ms per 1000 tokens, tokens/s) of `runs` runs, `streams` at a time."""
    from support.fake import start_fake_vllm

    from flowctl.engine.flow import load_flow_text
    from flowctl.engine.host import FlowHost

    server = start_fake_vllm(Path(tempfile.mkdtemp()), quiet=True, tokens=tokens, flush_each_token=flush)
    try:
        flow = load_flow_text(f"""
nodes:
  chat:
    type: http-stream
    url: {server.chat_url}
    body: {{model: {server.model}, stream: true, messages: [{{role: user, content: "${{input.prompt}}"}}]}}
    output: ${{response[].choices[0].delta.content}}
  reply: {{type: sse-sink, source: "${{nodes.chat.output as stream/text}}"}}
""")
        host = FlowHost(flow, state_dir=Path(tempfile.mkdtemp()))
        count = 0

        async def worker(n: int) -> None:
            nonlocal count
            for _ in range(n):
                async for _chunk in host.stream(host.prepare(None, {"prompt": "x"})):
                    count += 1

        await asyncio.gather(*(worker(3) for _ in range(streams)))  # warm-up: pools fill
        count = 0
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(runs // streams) for _ in range(streams)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await host.stop(0)
        return 1e6 * cpu / count, count / wall
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="flowctl's engine CPU per 1000 tokens (A/B against a base tree)")
    p.add_argument("--base", help="a base tree laid out as installed, measured alternately with this one")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--runs", type=int, default=3200)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--flush", action="store_true", help="the upstream writes each token on its own")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a single measurement, in-process
    args = p.parse_args(argv)
    if args.one:
        import uvloop

        uvloop.install()
        cpu, rate = asyncio.run(measure(args.streams, args.runs, args.tokens, args.flush))
        print(f"{cpu:.3f} {rate:.0f}")
        return 0
    trees = {"this tree": ""} | ({"base": args.base} if args.base else {})
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    own = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--base", args.base or "")]
    for _ in range(args.rounds):
        for name, path in trees.items():
            env = {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)
            out = subprocess.run([sys.executable, __file__, "--one", *own], env=env, capture_output=True, text=True, check=True)
            cpu, rate = out.stdout.split()
            results[name].append((float(cpu), float(rate)))
    cpu_name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "?")
    print(f"{args.streams} streams x {args.tokens} tokens{' (one write per token)' if args.flush else ''}, {args.runs} runs, {args.rounds} rounds; {cpu_name}, load average {os.getloadavg()[0]:.1f}")
    for name, rows in results.items():
        print(f"  {name:10s} CPU {statistics.median(c for c, _ in rows):6.2f} ms per 1k tokens (median; {', '.join(f'{c:.1f}' for c, _ in rows)}), "
              f"{statistics.median(r for _, r in rows):.0f} tokens/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
