"""What one hook call costs beyond starting a Python process, measured in the same run.

A hook runs in a child Python process of its own (`nodes/python_hook.call_hook`). The
baseline is the bare minimum that isolation costs: `sys.executable -I -u -c pass` started
through the same `ProcessGroup.spawn` (own session, watchdog) and stopped. The ratio says how
much the hook's own machinery (JSON on stdin, compiling the script, the result file) adds.

    .venv/bin/python bench/hook_call.py --calls 40
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from flowctl.nodes.process_group import ProcessGroup
from flowctl.nodes.python_hook import HookCall, call_hook

SCRIPT = """\
def hook(input, output, *, task_id, job_id, run_id, phase):
    return {"lines": len(output.splitlines()), "input": input}
"""


async def _bare() -> None:
    group = await ProcessGroup.spawn([sys.executable, "-I", "-u", "-c", "pass"], grace=2.0)
    try:
        await group.wait()
    finally:
        await group.stop()


async def _hook() -> None:
    call = HookCall(SCRIPT, "bench.yml", 1, ({"path": "."}, "a\nb\nc"), {"task_id": "t", "job_id": "j", "run_id": "r", "phase": "after"}, 30.0)
    await call_hook(call, lambda line: None)


async def _median(step: object, calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await step()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main(calls: int) -> None:
    await _bare()  # warm the page cache for both
    bare = await _median(_bare, calls)
    hook = await _median(_hook, calls)
    print(f"bare python start+stop: {bare * 1000:.1f} ms (median of {calls})")
    print(f"one hook call:          {hook * 1000:.1f} ms (median of {calls})")
    print(f"ratio hook / bare:      {hook / bare:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    asyncio.run(main(parser.parse_args().calls))
