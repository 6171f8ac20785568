#!/usr/bin/env python3
"""flowctl's benchmark, one command: ``python bench/run.py [--quick] [--out FILE]``.

Contenders, all up at the same time on their own ports, each over its own copy of the same
upstream (tests/servers/fake_vllm.py, same argv; see bench/contenders.py):

- ``direct``      the upstream itself: the floor;
- ``flowctl``     ``flowctl up bench/flows/flowctl.yml``, its SSE route;
- ``flowctl-mc``  ``flowctl up`` on the model-compose file, through model-compose's own route;
- ``flowctl-oai`` flowctl's OpenAI facade (``POST /v1/chat/completions``), when it answers;
- ``model-compose`` ``model-compose up`` (PyPI, its own venv bench/.venv-mc) on
  bench/flows/model-compose.yml, through ``POST /api/workflows/runs`` with ``output_only``.

For each mode (zero delay, 64 tokens; the same with every token written and flushed on its own;
paced 20 ms/token, 32 tokens) every contender is
started (up-to-ready measured; the upstream's own start is measured directly), then for each
concurrency (1, 8, 32, 64) the contenders take turns for several rounds in rotating order,
so the drift of a noisy machine is shared. Per request: TTFT, total time, tokens and their
exact order (bench/loadgen.py); per contender and cell: p50/p95 TTFT, p50 total, aggregate
tokens/s, errors, engine CPU per 1000 tokens and peak engine RSS (process tree minus the
upstream). Hot-reload latency comes from bench/reload_latency.py when it is there.

Prints markdown tables; writes everything to ``--out`` (default bench/results/latest.json).
``--quick`` is a smoke run (about 2-3 minutes); the full run takes about 8-11 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import contenders as C  # noqa: E402
import loadgen as L  # noqa: E402

ROOT = C.ROOT
MC_VENV = HERE / ".venv-mc"
MC_VERSION = "0.4.120"  # what PyPI serves as of this benchmark; pinned so runs compare

MODES = {
    "zero": C.Mode("zero", tokens=64, token_delay_ms=0),
    # a model server under light load writes each token on its own: one token per read
    "flush": C.Mode("flush", tokens=64, token_delay_ms=0, flush_each_token=True),
    "paced": C.Mode("paced", tokens=32, token_delay_ms=20),
}
CONCURRENCY = (1, 8, 32, 64)
# issue #18's targets for the per-token path: TTFT flowctl adds at one stream, and its CPU per
# 1000 tokens at 32 zero-delay streams (17.7 ms before the per-token path was folded)
TTFT_ADDED_MS = 0.7
CPU_PER_1K_MS = 17.7

# requests per batch (one contender's turn in one round), by mode and concurrency
FULL = {
    "rounds": {"zero": 5, "flush": 5, "paced": 3},
    "requests": {"zero": {1: 60, 8: 96, 32: 192, 64: 256}, "flush": {1: 60, 8: 96, 32: 192, 64: 256}, "paced": {1: 8, 8: 24, 32: 64, 64: 128}},
    "start_cycles": 3,
    "reload": ["--samples", "10", "--restarts", "3"],
}
QUICK = {
    "rounds": {"zero": 2, "flush": 2, "paced": 2},
    "requests": {"zero": {1: 20, 8: 48, 32: 96, 64: 128}, "flush": {1: 20, 8: 48, 32: 96, 64: 128}, "paced": {1: 3, 8: 8, 32: 32, 64: 64}},
    "start_cycles": 1,
    "reload": ["--samples", "4", "--restarts", "1"],
}


def say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- setup


def ensure_model_compose() -> tuple[Path | None, str]:
    """bench/.venv-mc with model-compose==MC_VERSION; (path of its CLI, version or why not)."""
    binary = MC_VENV / "bin" / "model-compose"
    if not binary.exists():
        say(f"installing model-compose=={MC_VERSION} into {MC_VENV.relative_to(ROOT)} ...")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(MC_VENV)], check=True)
            (MC_VENV / ".gitignore").write_text("*\n")
            subprocess.run([str(MC_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            f"model-compose=={MC_VERSION}"], check=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            return None, f"model-compose install failed ({exc}); contender skipped"
    try:
        out = subprocess.run([str(binary), "--version"], check=False, capture_output=True, text=True, timeout=60).stdout.strip()
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"model-compose does not run ({exc}); contender skipped"
    version = out.split()[-1] if out else "?"
    return binary, version


def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(kb / 1024 / 1024, 1)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip())
    import httpx

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "httpx": httpx.__version__,
        "flowctl_rev": rev + ("+dirty" if dirty else ""),
        "loadavg_start": os.getloadavg(),
    }


def check_expected_tokens() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "servers"))
    import fake_vllm

    assert fake_vllm.expected_tokens(5) == L.expected_tokens(5), "bench/loadgen.py disagrees with fake_vllm.expected_tokens"


# --------------------------------------------------------------------------- probes


async def probe(c: C.Contender, tokens: int) -> str | None:
    """One request; None when it streams the right tokens, else why not."""
    async with L.new_client(4) as client:
        r = await L.one_request(client, c.target(), L.expected_tokens(tokens))
    return None if r.ok else (r.error or "failed")


def validates(flow: Path) -> tuple[bool, str]:
    p = subprocess.run([str(ROOT / ".venv" / "bin" / "flowctl"), "validate", str(flow)], check=False, cwd=ROOT, capture_output=True, text=True)
    lines = (p.stderr or p.stdout).strip().splitlines()
    return p.returncode == 0, lines[0] if lines else ""


# --------------------------------------------------------------------------- measuring


class RssPeak:
    """Samples a contender's engine RSS every 50 ms while its batch runs."""

    def __init__(self, c: C.Contender) -> None:
        self.c = c
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, self.c.engine_rss())
            await asyncio.sleep(0.05)  # sampling period

    def __enter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, self.c.engine_rss())


async def run_cell(active: list[C.Contender], clients: dict[str, Any], mode: C.Mode, conc: int, rounds: int, requests: int,
                   shift: int) -> dict[str, Any]:
    expected = L.expected_tokens(mode.tokens)
    batches: dict[str, list[L.Batch]] = {c.key: [] for c in active}
    cpu = {c.key: 0.0 for c in active}
    cpu_up = {c.key: 0.0 for c in active}
    rss = {c.key: 0 for c in active}
    # warm-up: one request per worker, not recorded (pools fill, code paths get hot)
    for c in active:
        await L.run_batch(clients[c.key], c.target(), conc, conc, expected)
    for r in range(rounds):
        k = (r + shift) % len(active)
        order = active[k:] + active[:k]
        for c in order:
            e0, u0 = c.engine_cpu(), c.upstream_cpu()
            with RssPeak(c) as peak:
                b = await L.run_batch(clients[c.key], c.target(), conc, requests, expected)
            cpu[c.key] += c.engine_cpu() - e0
            cpu_up[c.key] += c.upstream_cpu() - u0
            rss[c.key] = max(rss[c.key], peak.peak)
            batches[c.key].append(b)
    out: dict[str, Any] = {}
    for c in active:
        s = L.summarize(batches[c.key])
        tok = s["tokens"] or 1
        s["engine_cpu_s"] = round(cpu[c.key], 3)
        s["engine_cpu_ms_per_1k_tokens"] = round(1e6 * cpu[c.key] / tok, 1) if c.kind != "direct" else None
        s["upstream_cpu_ms_per_1k_tokens"] = round(1e6 * cpu_up[c.key] / tok, 1)
        s["engine_rss_peak_mb"] = round(rss[c.key] / 1e6, 1) if c.kind != "direct" else None
        out[c.key] = s
    return out


def start_all(cs: list[C.Contender], mode: C.Mode, cycles: int, results: dict[str, Any]) -> list[C.Contender]:
    """Start every contender `cycles` times (rotating order), keep the last start running;
    drop (with a note) any that cannot start."""
    ready: dict[str, list[float]] = {c.key: [] for c in cs}
    alive = list(cs)
    for cycle in range(cycles):
        k = cycle % len(alive) if alive else 0
        for c in alive[k:] + alive[:k]:
            try:
                ready[c.key].append(c.start(mode))
            except C.NotReady as exc:
                c.notes.append(f"did not start ({mode.key}): {str(exc).splitlines()[0]}")
                say(f"  {c.title}: did not start: {exc}")
                c.stop()
                alive.remove(c)
                continue
            if cycle < cycles - 1:
                c.stop()
    for c in alive:
        results.setdefault(c.key, []).extend(ready[c.key])
    return alive


async def run_mode(cs: list[C.Contender], mode: C.Mode, plan: dict[str, Any], report: dict[str, Any]) -> None:
    say(f"\n== {mode.title}: starting {len(cs)} contenders ({plan['start_cycles']} start(s) each) ==")
    alive = start_all(cs, mode, plan["start_cycles"], report["ready_s"])
    # optional contenders must stream correctly, else they are dropped with a note
    for c in list(alive):
        why = await probe(c, mode.tokens)
        if why is not None:
            c.notes.append(f"dropped ({mode.key}): {why}")
            say(f"  {c.title}: dropped: {why}")
            c.stop()
            alive.remove(c)
    await asyncio.sleep(1.0)  # settle before the idle RSS reading
    for c in alive:
        if c.kind != "direct":
            report["rss_idle_mb"].setdefault(c.key, []).append(round(c.engine_rss() / 1e6, 1))
    clients = {c.key: L.new_client(max(plan["concurrency"]) + 8) for c in alive}
    try:
        for i, conc in enumerate(plan["concurrency"]):
            t0 = time.perf_counter()
            cell = await run_cell(alive, clients, mode, conc, plan["rounds"][mode.key], plan["requests"][mode.key].get(conc, 4 * conc), shift=i)
            report["cells"].setdefault(mode.key, {})[str(conc)] = cell
            say(f"  c={conc:<3} {time.perf_counter() - t0:5.1f}s  " + "  ".join(
                f"{c.key}: ttft {cell[c.key]['ttft_p50_ms']}ms {cell[c.key]['tokens_per_s']}tok/s err {cell[c.key]['errors']}" for c in alive))
    finally:
        for client in clients.values():
            await client.aclose()
        for c in alive:
            c.stop()


def reload_latency(plan: dict[str, Any]) -> dict[str, Any]:
    script = HERE / "reload_latency.py"
    if not script.exists():
        return {"note": "bench/reload_latency.py not present; not measured"}
    say("\n== hot reload (bench/reload_latency.py) ==")
    try:
        p = subprocess.run([sys.executable, str(script), *plan["reload"]], check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"note": "bench/reload_latency.py timed out after 600 s"}
    if p.returncode != 0:
        return {"note": f"bench/reload_latency.py failed (exit {p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}"}
    out: dict[str, Any] = {"save_to_effect": {}, "logged_reload": {}, "raw": p.stdout.strip()}
    section = None
    for line in p.stdout.splitlines():
        if line.startswith("save -> first run"):
            section = "save_to_effect"
        elif line.startswith("`reloaded FILE"):
            section = "logged_reload"
        m = re.match(r"\s+(.+?)\s+n=(\d+)\s+p50\s+([\d.]+)\s+p95\s+([\d.]+)\s+max\s+([\d.]+)", line)
        if m and section:
            out[section][m.group(1)] = {"n": int(m.group(2)), "p50_ms": float(m.group(3)), "p95_ms": float(m.group(4)), "max_ms": float(m.group(5))}
    say(p.stdout.strip())
    return out


# --------------------------------------------------------------------------- report


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def median(xs: list[float]) -> float | None:
    return L.percentile(xs, 50) if xs else None


def derive(report: dict[str, Any]) -> dict[str, Any]:
    """Added latency vs direct, ratios, and the targets."""
    d: dict[str, Any] = {"added": {}, "targets": {}}
    for mode, cells in report["cells"].items():
        for conc, cell in cells.items():
            base = cell.get("direct")
            if not base:
                continue
            for key, s in cell.items():
                if key == "direct":
                    continue
                d["added"].setdefault(mode, {}).setdefault(conc, {})[key] = {
                    "ttft_p50_ms": _diff(s["ttft_p50_ms"], base["ttft_p50_ms"]),
                    "total_p50_ms": _diff(s["total_p50_ms"], base["total_p50_ms"]),
                    "tokens_per_s_pct_of_direct": round(100 * s["tokens_per_s"] / base["tokens_per_s"], 1)
                    if s["tokens_per_s"] and base["tokens_per_s"] else None,
                }
    add = d["added"]
    t = d["targets"]

    def get(mode: str, conc: int, key: str, field: str) -> float | None:
        return add.get(mode, {}).get(str(conc), {}).get(key, {}).get(field)

    for mode in report["cells"]:
        a = get(mode, 1, "flowctl", "ttft_p50_ms")
        t[f"ttft_added_c1_{mode}"] = {"target": f"flowctl adds <= {TTFT_ADDED_MS} ms p50 TTFT at concurrency 1", "value_ms": a,
                                      "met": None if a is None else a <= TTFT_ADDED_MS}
        p = get(mode, 32, "flowctl", "tokens_per_s_pct_of_direct")
        t[f"throughput_c32_{mode}"] = {"target": ">= 95 % of direct tokens/s at 32 streams", "value_pct": p,
                                       "met": None if p is None else p >= 95.0}
        cpu = report["cells"][mode].get("32", {}).get("flowctl", {}).get("engine_cpu_ms_per_1k_tokens")
        if cpu is not None and mode != "paced":
            t[f"cpu_c32_{mode}"] = {"target": f"flowctl CPU per 1k tokens at 32 streams below {CPU_PER_1K_MS} ms", "value_cpu": cpu,
                                    "met": cpu < CPU_PER_1K_MS}
        for conc in (1, 32):
            for field in ("ttft_p50_ms", "total_p50_ms"):
                f = get(mode, conc, "flowctl", field)
                m = get(mode, conc, "model-compose", field)
                if f is None or m is None:
                    continue
                # flowctl adding nothing measurable (<= 0) while model-compose adds time: unbounded ratio
                ratio = m / f if f > 0 else (float("inf") if m > 0 else None)
                what = field.split("_")[0]
                t[f"vs_mc_{what}_c{conc}_{mode}"] = {
                    "target": f"flowctl adds >= 5x less {what.upper()} p50 than model-compose (c={conc})",
                    "flowctl_added_ms": f, "model_compose_added_ms": m,
                    "ratio": None if ratio is None else (round(ratio, 1) if ratio != float("inf") else "inf"),
                    "met": None if ratio is None else ratio >= 5.0}
    return d


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def markdown(report: dict[str, Any]) -> str:
    out: list[str] = []
    m = report["machine"]
    out.append(f"flowctl {m['flowctl_rev']} vs model-compose {report['model_compose_version']}, "
               f"{m['cpu']} ({m['cores']} cores, {m['mem_gb']} GB), Linux {m['kernel']}, Python {m['python']}, "
               f"{'quick' if report['quick'] else 'full'} run, {report['elapsed_s']:.0f} s, load average "
               f"{m['loadavg_start'][0]:.1f} at start / {m.get('loadavg_end', [0])[0]:.1f} at end")
    titles = report["titles"]
    for mode, cells in report["cells"].items():
        out.append(f"\n### {report['mode_titles'][mode]}\n")
        out.append("| conc | contender | TTFT p50 ms | TTFT p95 ms | total p50 ms | tokens/s | % of direct | errors | exact order | CPU ms/1k tok | RSS peak MB |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for conc, cell in cells.items():
            base = cell.get("direct", {}).get("tokens_per_s")
            for key, s in cell.items():
                pct = f"{100 * s['tokens_per_s'] / base:.0f} %" if base and s["tokens_per_s"] else "–"
                out.append(f"| {conc} | {titles[key]} | {_f(s['ttft_p50_ms'], 2)} | {_f(s['ttft_p95_ms'], 2)} | {_f(s['total_p50_ms'], 1)} | "
                           f"{_f(s['tokens_per_s'], 0)} | {pct} | {s['errors']}/{s['requests']} | {s['order_ok']}/{s['requests']} | "
                           f"{_f(s['engine_cpu_ms_per_1k_tokens'])} | {_f(s['engine_rss_peak_mb'])} |")
    out.append("\n### Latency added to the direct path (p50, ms; same cell, interleaved)\n")
    keys = [k for k in titles if k != "direct"]
    out.append("| mode | conc | " + " | ".join(f"{titles[k]} TTFT / total" for k in keys) + " | model-compose ÷ flowctl (TTFT) |")
    out.append("|---|---:|" + "---:|" * len(keys) + "---:|")
    for mode, per in report["derived"]["added"].items():
        for conc, row in per.items():
            cols = []
            for k in keys:
                a = row.get(k)
                cols.append(f"{_f(a['ttft_p50_ms'], 2)} / {_f(a['total_p50_ms'], 2)}" if a else "–")
            f, mc = (row.get("flowctl") or {}).get("ttft_p50_ms"), (row.get("model-compose") or {}).get("ttft_p50_ms")
            ratio = f"{mc / f:.1f}×" if f and mc and f > 0 else "–"
            out.append(f"| {mode} | {conc} | " + " | ".join(cols) + f" | {ratio} |")
    out.append("\n### Start and memory\n")
    out.append("| contender | up-to-ready s (median) | beyond the upstream's own start s | RSS idle MB | RSS peak under load MB |")
    out.append("|---|---:|---:|---:|---:|")
    up = median(report["ready_s"].get("direct", []))
    for key in titles:
        r = median(report["ready_s"].get(key, []))
        idle = median(report["rss_idle_mb"].get(key, []))
        peaks = [cell[key]["engine_rss_peak_mb"] for cells in report["cells"].values() for cell in cells.values()
                 if key in cell and cell[key]["engine_rss_peak_mb"] is not None]
        beyond = None if r is None or up is None or key == "direct" else r - up
        out.append(f"| {titles[key]} | {_f(r, 2)} | {_f(beyond, 2) if key != 'direct' else '(the upstream itself)'} | {_f(idle)} | {_f(max(peaks) if peaks else None)} |")
    rl = report.get("reload") or {}
    out.append("\n### Hot reload (flowctl; bench/reload_latency.py)\n")
    if rl.get("save_to_effect"):
        out.append("| edit | n | save → effect p50 ms | p95 ms | max ms | reload as logged p50 ms |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for name, s in rl["save_to_effect"].items():
            lg = rl.get("logged_reload", {}).get(name, {})
            out.append(f"| {name} | {s['n']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['max_ms']:.1f} | {_f(lg.get('p50_ms'))} |")
    else:
        out.append(rl.get("note", "not measured"))
    out.append("\n### Targets\n")
    out.append("| target | value | met |")
    out.append("|---|---|---|")
    for name, t in report["derived"]["targets"].items():
        if "value_ms" in t:
            v = f"{_f(t['value_ms'], 2)} ms added"
        elif "value_cpu" in t:
            v = f"{_f(t['value_cpu'])} ms CPU per 1k tokens"
        elif "value_pct" in t:
            v = f"{_f(t['value_pct'])} % of direct"
        else:
            v = f"flowctl {t['flowctl_added_ms']:+.2f} ms, model-compose {t['model_compose_added_ms']:+.2f} ms: {t['ratio']}×"
        mode = name.rsplit("_", 1)[1]
        out.append(f"| {t['target']} ({mode}) | {v} | {'yes' if t['met'] else ('no' if t['met'] is False else '–')} |")
    notes = [f"{titles.get(k, k)}: {n}" for k, ns in report["notes"].items() for n in ns]
    if notes:
        out.append("\nNotes:\n" + "\n".join(f"- {n}" for n in notes))
    return "\n".join(out)


# --------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    plan = dict(QUICK if args.quick else FULL)
    plan["concurrency"] = [int(x) for x in args.concurrency.split(",")]
    check_expected_tokens()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = HERE / "results" / f"run-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "quick": args.quick, "started": stamp, "machine": machine_info(), "modes": {}, "mode_titles": {},
        "cells": {}, "ready_s": {}, "rss_idle_mb": {}, "notes": {}, "titles": {}, "workdir": str(workdir.relative_to(ROOT)),
    }
    flowctl_bin = ROOT / ".venv" / "bin" / "flowctl"
    cs: list[C.Contender] = [C.Contender("direct", "direct (upstream)", "direct", workdir)]
    if flowctl_bin.exists():
        cs.append(C.Contender("flowctl", "flowctl", "flowctl", workdir))
        ok, why = validates(HERE / "flows" / "model-compose.yml")
        mc_flowctl = C.Contender("flowctl-mc", "flowctl (model-compose file)", "flowctl-mc", workdir, seed_form=not ok)
        if not ok:
            mc_flowctl.notes.append("`flowctl validate` rejects the model-compose 0.4.120 file as is ("
                                    + why.split(": ", 1)[-1].split(" (")[0] + "), so flowctl runs the same flow "
                                    "with the seed's older `controller: {type: http-server}` form")
        cs.append(mc_flowctl)
        if not args.no_facade:
            cs.append(C.Contender("flowctl-oai", "flowctl (OpenAI facade)", "flowctl-openai", workdir))
    else:
        say(f"no {flowctl_bin}: run `make setup` first")
    if not args.no_mc:
        mc_bin, version = ensure_model_compose()
        report["model_compose_version"] = version if mc_bin else None
        if mc_bin:
            say(f"model-compose {version} ({mc_bin.relative_to(ROOT)})")
            cs.append(C.Contender("model-compose", f"model-compose {version}", "model-compose", workdir, mc_bin=mc_bin))
        else:
            report["notes"]["model-compose"] = [version]
            say(version)
    else:
        report["model_compose_version"] = None
    for spec in args.variant:
        # A/B a patch: a tree laid out like the installed package (flowctl/, flowctl/engine/,
        # flowctl/nodes/, flowctl/server/) put first on PYTHONPATH of one more flowctl contender
        name, _, path = spec.partition("=")
        c = C.Contender(f"flowctl-{name}", f"flowctl ({name})", "flowctl", workdir, env={"PYTHONPATH": os.pathsep.join(str(Path(x).resolve()) for x in path.split(os.pathsep))})
        cs.insert(2, c)
    if args.only:
        keep = set(args.only.split(",")) | {"direct"}
        cs = [c for c in cs if c.key in keep]
    report["titles"] = {c.key: c.title for c in cs}
    t0 = time.perf_counter()
    try:
        for mk in args.modes.split(","):
            mode = MODES[mk]
            report["modes"][mk] = {"tokens": mode.tokens, "token_delay_ms": mode.token_delay_ms}
            report["mode_titles"][mk] = mode.title
            await run_mode(cs, mode, plan, report)
    finally:
        for c in cs:
            c.stop()
            if c.notes:
                report["notes"][c.key] = report["notes"].get(c.key, []) + c.notes
    # contenders that ran in no cell leave the tables
    ran = {k for cells in report["cells"].values() for cell in cells.values() for k in cell}
    report["titles"] = {k: v for k, v in report["titles"].items() if k in ran}
    if not args.no_reload:
        report["reload"] = reload_latency(plan)
    report["elapsed_s"] = time.perf_counter() - t0
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["derived"] = derive(report)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="flowctl vs the direct upstream vs model-compose: one command, one table.")
    p.add_argument("--quick", action="store_true", help="fewer rounds and requests (under 3 minutes)")
    p.add_argument("--out", default=str(HERE / "results" / "latest.json"), help="JSON results (default bench/results/latest.json)")
    p.add_argument("--modes", default="zero,flush,paced", help="comma list of: " + ", ".join(MODES))
    p.add_argument("--only", default="", help="comma list of contender keys to run besides direct "
                   "(flowctl, flowctl-mc, flowctl-oai, model-compose)")
    p.add_argument("--no-mc", action="store_true", help="skip model-compose")
    p.add_argument("--no-facade", action="store_true", help="skip flowctl's OpenAI facade")
    p.add_argument("--no-reload", action="store_true", help="skip the hot-reload measurement")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                   help="one more flowctl contender with PATH (os.pathsep-separated) first on its PYTHONPATH, to A/B a patch "
                   "or a dependency (repeatable)")
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)), help="comma list (default 1,8,32,64)")
    p.add_argument("--render", metavar="JSON", help="print the tables of a saved results file again (no run)")
    args = p.parse_args(argv)
    if args.render:
        report = json.loads(Path(args.render).read_text())
        report["derived"] = derive(report)
        say(markdown(report))
        return 0
    try:
        report = asyncio.run(amain(args))
    except KeyboardInterrupt:
        C.stop_all()
        say("\ninterrupted; every process the benchmark started is stopped")
        return 130
    finally:
        C.stop_all()
    text = markdown(report)
    report["markdown"] = text
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    say("\n" + text)
    say(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
