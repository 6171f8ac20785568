"""What a Ray-placed replica adds to a run over a local one: one `flowctl up` serving two
workflows over the same fake vLLM server, the same load client (bench/loadgen.py) for both:

- ``local``  http-stream `service:` over a process-start replica on this machine;
- ``ray``    the same over the same replica placed by Ray (`placement: {engine: ray}`) on a
             one-node Ray cluster this script starts on loopback
             (tests/support/ray_cluster.py) and stops by pid.

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
import replicas
from replicas import cpu_name, free_port, ratio, wait_ready
from support.ray_cluster import RayCluster, ray_missing


def flow_yaml(address: str, tokens: int, delay_ms: float) -> str:
    """bench/replicas.py's flow, its second service (`pair`, balanced over by workflow `two`)
    made one replica placed by Ray: workflow `one` is the local replica, `two` the Ray one."""
    text = replicas.flow_yaml(tokens, delay_ms)
    placed = "    replicas: 1\n    placement: " + json.dumps({"engine": "ray", "address": address, "resources": {"slot": 1}}) + "\n"
    if text.count("    replicas: 2\n") != 1:
        raise SystemExit("bench/replicas.py's flow changed: its two-replica service is not found")
    return text.replace("    replicas: 2\n", placed)


#: the workflows of that flow, by what they go through
NAMES = {"one": "local", "two": "ray"}


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
        measured = {c: asyncio.run(replicas.measure(base, c, args.requests, args.rounds, args.tokens)) for c in levels}
        cells = {c: {NAMES[name]: cell for name, cell in by_name.items()} for c, by_name in measured.items()}
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
