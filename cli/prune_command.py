"""`flowctl prune [FLOW...]`: remove the cached environments and pip caches that neither the
given flows (default: the flow the command resolves to) nor any running flowctl use
(`engine/prune.py` decides; `nodes/env_store.py` removes, under the locks).

It lists what stays (and why) and what goes, with sizes; `--dry-run` stops there. On a
terminal it asks before removing anything; elsewhere it needs `--yes`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .engine.errors import ExitCode, UsageError
from .engine.flow import load_flow
from .engine.flow_files import env_files_for, read_env_files
from .engine.prune import plan_prune
from .nodes.base import default_cache_dir
from .nodes.env_store import remove_entry
from .server.console import say


def prune(flows: list[str], *, dry_run: bool, yes: bool) -> int:
    compiled = []
    for flow in flows:
        read_env_files(env_files_for(Path(flow), []))  # the same values `up` would see
        compiled.append(load_flow(flow))  # a flow that does not load keeps nothing: refuse
    cache_dir = default_cache_dir()
    plan = plan_prune(cache_dir, compiled)
    out = sys.stdout
    verb = "would remove" if dry_run else "remove"
    width = len(verb)
    for entry, why in plan.keep:
        out.write(f"{'keep':<{width}}  {_size(entry.bytes):>8}  {entry.path}  ({why})\n")
    for entry in plan.remove:
        out.write(f"{verb:<{width}}  {_size(entry.bytes):>8}  {entry.path}\n")
    if not plan.remove:
        say(f"nothing to remove in {cache_dir}")
        return ExitCode.OK
    total = f"{len(plan.remove)} {'entry' if len(plan.remove) == 1 else 'entries'}, {_size(plan.bytes)}"
    if dry_run:
        say(f"would remove {total} (--dry-run)")
        return ExitCode.OK
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"prune would remove {total}; add --yes to do it (or --dry-run to only list it)")
        answer = input(f"remove {total}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            say("nothing removed")
            return ExitCode.OK
    removed = skipped = 0
    freed = 0
    for entry in plan.remove:
        if remove_entry(entry):
            removed += 1
            freed += entry.bytes
        else:
            skipped += 1
            say(f"left {entry.path}: a flowctl started using it meanwhile")
    say(f"removed {removed} ({_size(freed)})" + (f"; {skipped} came into use and stay" if skipped else ""))
    return ExitCode.OK


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


__all__ = ["prune"]
