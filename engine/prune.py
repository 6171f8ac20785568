"""What `flowctl prune` removes from the shared cache (`nodes/env_store.py`): the environments
(`<cache>/envs/`) and env-setup's pip caches (`<cache>/pip/`) that nothing needs.

Kept, whatever else:

- what an env-setup node of the flows named (by default, the flow the command resolves to)
  would use now: its environment and its pip cache, computed as env-setup does, from the
  spec and the current environment;
- where such a node's fields cannot be resolved without running the flow (a template that
  reads another service's output), every environment of that node (`<node id>-*`) and every
  pip cache: prune never guesses towards deleting;
- anything a running flowctl holds a lease on (an `up` or a `run` of any flow, anywhere) or
  is setting up: the lease is a lock the kernel drops when that process ends.

Environments outside the cache (a node's own `path:`) are never touched.

    plan = plan_prune(cache_dir, [load_flow("flows/local_chat.yml")])
    for entry in plan.remove: ...
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..nodes.env_setup import EnvSetupSpec, env_path, pip_cache_dir
from ..nodes.env_store import CacheEntry, cache_entries, in_use
from .errors import TemplateError
from .graph import CompiledFlow
from .supervisor import resolve_fields


@dataclass
class PrunePlan:
    #: (entry, why it stays)
    keep: list[tuple[CacheEntry, str]] = field(default_factory=list)
    remove: list[CacheEntry] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(entry.bytes for entry in self.remove)


@dataclass
class _Wanted:
    paths: dict[Path, str] = field(default_factory=dict)
    #: node ids whose environments all stay (their spec could not be resolved), with why
    prefixes: dict[str, str] = field(default_factory=dict)
    all_pip: str | None = None


def plan_prune(cache_dir: Path, flows: Sequence[CompiledFlow]) -> PrunePlan:
    wanted = _wanted(cache_dir, flows)
    plan = PrunePlan()
    for entry in cache_entries(cache_dir):
        why = wanted.paths.get(entry.path.resolve())
        if why is None and entry.kind == "env":
            why = next((reason for prefix, reason in wanted.prefixes.items() if entry.path.name.startswith(prefix + "-")), None)
        if why is None and entry.kind == "pip":
            why = wanted.all_pip
        if why is None and in_use(entry):
            why = "in use by a running flowctl" if entry.kind == "env" else "in use by a setup in progress"
        if why is None:
            plan.remove.append(entry)
        else:
            plan.keep.append((entry, why))
    return plan


def _wanted(cache_dir: Path, flows: Sequence[CompiledFlow]) -> _Wanted:
    wanted = _Wanted()
    for flow in flows:
        for node_id in flow.services:
            spec = flow.nodes[node_id].spec
            if not isinstance(spec, EnvSetupSpec):
                continue
            who = f"{flow.file}: {node_id}"
            try:
                resolved = resolve_fields(flow, node_id, {})
            except TemplateError:
                reason = f"{who} (its fields need a running flow to resolve)"
                wanted.prefixes[node_id] = reason
                wanted.all_pip = wanted.all_pip or reason
                continue
            if spec.venv and not resolved.get("path"):
                wanted.paths[env_path(spec, resolved, cache_dir, node_id)] = who
            own_env = {str(k): str(v) for k, v in (resolved.get("env") or {}).items()}
            if "PIP_CACHE_DIR" not in own_env:
                wanted.paths[pip_cache_dir(cache_dir, spec, own_env, os.environ).resolve()] = who
    return wanted


__all__ = ["PrunePlan", "plan_prune"]
