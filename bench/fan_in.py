#!/usr/bin/env python3
"""Fan-out/fan-in: what flowctl adds over the slowest branch.

    python bench/fan_in.py [--branches 4] [--rounds 30] [--step-ms 10] [--out FILE]

A flow of N independent http-stream nodes (branch i asks the fake upstream for 8 tokens,
(i+1) x step ms apart, so the branches last about 70, 140, 210, ... ms) joined by a value node is
served by `flowctl up`. Each round, in alternating order:

- **direct**: the same N requests sent at once straight to the upstream (httpx, one client);
  the time until the last answer is the slowest branch, the floor for any engine;
- **flowctl**: one `POST /api/workflows/fan/runs` (answer collected as JSON).

Reported: p50/p95 of both, flowctl's overhead over the slowest branch (flowctl minus direct,
per round, p50/p95), and the sum of the branches' own durations: what running them one
after the other (the scheduler before issue #17) would take at least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contenders as C  # noqa: E402
import httpx  # noqa: E402
import loadgen as L  # noqa: E402
from run import machine_info  # noqa: E402


def flow_text(upstream: str, branches: int, step_ms: float, port: int) -> str:
    nodes = []
    for i in range(branches):
        nodes.append(f"""  b{i}:
    type: http-stream
    url: {upstream}/v1/chat/completions
    headers: {{x-fake-tokens: "8", x-fake-token-delay-ms: "{(i + 1) * step_ms:g}"}}
    body: {{model: {C.MODEL}, stream: false, messages: [{{role: user, content: "branch {i}"}}]}}
    stream_format: null
    output: ${{response.choices[0].message.content}}""")
    join = ", ".join(f"b{i}: \"${{nodes.b{i}.output}}\"" for i in range(branches))
    return f"""version: 1
name: bench-fan-in
server: {{port: {port}, ui_port: null, max_concurrency: 8}}
nodes:
{chr(10).join(nodes)}
  join:
    type: value
    value: {{{join}}}
workflows:
  fan: {{output: join}}
"""


async def direct(client: httpx.AsyncClient, upstream: str, branches: int, step_ms: float) -> tuple[float, list[float]]:
    """All branches at once, straight to the upstream: (time to the last answer, each one's time)."""

    async def one(i: int) -> float:
        t0 = time.perf_counter()
        r = await client.post(f"{upstream}/v1/chat/completions", headers={"x-fake-tokens": "8", "x-fake-token-delay-ms": f"{(i + 1) * step_ms:g}"},
                              json={"model": C.MODEL, "stream": False, "messages": [{"role": "user", "content": f"branch {i}"}]})
        r.raise_for_status()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    each = await asyncio.gather(*(one(i) for i in range(branches)))
    return time.perf_counter() - t0, list(each)


async def through_flowctl(client: httpx.AsyncClient, api: str, branches: int) -> float:
    t0 = time.perf_counter()
    r = await client.post(f"{api}/workflows/fan/runs", json={"input": {}}, headers={"Accept": "application/json"})
    elapsed = time.perf_counter() - t0
    body = r.json()
    if r.status_code != 200 or body.get("status") != "succeeded" or len(body.get("output") or {}) != branches:
        raise RuntimeError(f"flowctl run failed: {r.status_code} {body}")
    return elapsed


def pct(xs: list[float], q: float) -> float:
    return L.percentile(xs, q) if xs else float("nan")


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    up_port, api_port = C.free_port(), C.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    fake = C.Proc(C.upstream_argv(sys.executable, up_port, C.Mode("fan", tokens=8, token_delay_ms=0)), workdir / "upstream.log")
    C.wait_ready(fake, f"{upstream}/v1/models", 30)
    flow = workdir / "fan_in.yml"
    flow.write_text(flow_text(upstream, args.branches, args.step_ms, api_port))
    engine = C.Proc([str(C.ROOT / ".venv" / "bin" / "flowctl"), "up", str(flow), "--port", str(api_port), "--ui-port", "0", "--no-reload"], workdir / "flowctl.log")
    api = f"http://127.0.0.1:{api_port}/api"
    C.wait_ready(engine, f"{api}/ready", 60)
    rows: dict[str, list[float]] = {"direct": [], "flowctl": [], "overhead": [], "sequential": []}
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            for _ in range(2):  # warm-up: pools fill, code paths get hot
                await direct(client, upstream, args.branches, args.step_ms)
                await through_flowctl(client, api, args.branches)
            for r in range(args.rounds):
                if r % 2:
                    f = await through_flowctl(client, api, args.branches)
                    d, each = await direct(client, upstream, args.branches, args.step_ms)
                else:
                    d, each = await direct(client, upstream, args.branches, args.step_ms)
                    f = await through_flowctl(client, api, args.branches)
                rows["direct"].append(d * 1000)
                rows["flowctl"].append(f * 1000)
                rows["overhead"].append((f - d) * 1000)
                rows["sequential"].append(sum(each) * 1000)
    finally:
        engine.stop()
        fake.stop()
    return {k: {"p50_ms": round(pct(v, 50), 2), "p95_ms": round(pct(v, 95), 2), "n": len(v)} for k, v in rows.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="flowctl's overhead over the slowest branch of a fan-out/fan-in")
    p.add_argument("--branches", type=int, default=4)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--step-ms", type=float, default=10.0, help="branch i paces its 8 tokens (i+1) x this apart")
    p.add_argument("--out", default=str(HERE / "results" / "fan_in.json"))
    args = p.parse_args(argv)
    workdir = HERE / "results" / f"fan-in-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(measure(args, workdir))
    finally:
        C.stop_all()
    machine = machine_info()
    report = {"machine": machine, "branches": args.branches, "rounds": args.rounds, "step_ms": args.step_ms, "result": result,
              "command": "python bench/fan_in.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    slowest = 7 * args.branches * args.step_ms  # 8 tokens: 7 gaps
    print(f"fan-out/fan-in, {args.branches} branches (the slowest paced to about {slowest:g} ms), {args.rounds} rounds; "
          f"{machine['cpu']} ({machine['cores']} cores), flowctl {machine['flowctl_rev']}, load average {machine['loadavg_start'][0]:.1f}")
    print("\n| | p50 ms | p95 ms |\n|---|---:|---:|")
    titles = {"direct": "direct: all branches at once (the slowest branch)", "flowctl": "flowctl: the whole run",
              "overhead": "flowctl's overhead over the slowest branch", "sequential": "the branches one after the other (sum)"}
    for key, title in titles.items():
        print(f"| {title} | {result[key]['p50_ms']:.2f} | {result[key]['p95_ms']:.2f} |")
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
