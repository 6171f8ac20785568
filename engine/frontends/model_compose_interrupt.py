"""model-compose's job `interrupt:` (a person reviews before and/or after a job runs),
lowered to `pause` nodes around the job's node.

    interrupt:
      before: {message: "About to run ${input.command}", metadata: {command: ${input.command}}}
      after:  {message: "Review the output", metadata: {result: ${output}}, timeout: 10m}

- `before` → a pause node between the jobs it waits on and its node: its `value` is the
  job's input, and the node reads its input from the pause, so a non-null answer replaces
  the input (model-compose's `_apply_before_interrupt`).
- `after` → a pause node reading the action's result (before the job's `output:` mapping):
  a non-null answer replaces it (`_apply_after_interrupt`); the job's `output:` and every
  job after it read the pause.
- In `message` and `metadata`, `${input}` is the job's input and `${output}` (after) the
  action's result; model-compose's own names `${job.input}` and `${job.output}` work too.
  (model-compose renders a bare `${input}` there as the workflow's input and has no
  `${output}`; its interrupt example reads both as the job's, which is what flowctl does.)
- `before: true` pauses without a message. `timeout:` (flowctl's) bounds the wait; default
  `engine.pauses.DEFAULT_PAUSE_TIMEOUT`. `condition:` is not lowered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TemplateError
from ..loader import PathKey
from ..pauses import MAX_PAUSE_TIMEOUT
from ..templating.rewrite import Unbindable, bind
from . import model_compose_keys as keys
from .model_compose_jobs import MC_SOURCES, Job

if TYPE_CHECKING:
    from .model_compose_jobs import WorkflowLowering

_SOURCES = (*MC_SOURCES, "job")


def point(wl: WorkflowLowering, job: Job, phase: str) -> tuple[dict[str, Any], PathKey] | None:
    """The job's `interrupt.<phase>` as a mapping and where it is written, or None (no pause
    there, or an error reported)."""
    interrupt = job.data.get("interrupt")
    if interrupt is None:
        return None
    path = (*job.path, "interrupt")
    if not isinstance(interrupt, dict):
        if phase == "before":
            wl.error("`interrupt` takes `before:` and `after:`", path)
        return None
    if phase == "before":
        keys.check_keys(interrupt, path, keys.INTERRUPTS, "in interrupt", wl.lw.errors, wl.lw.doc.locate)
    config, where = interrupt.get(phase), (*path, phase)
    if config is None or config is False:
        return None
    if config is True:
        return {}, where
    if not isinstance(config, dict):
        wl.error(f"`{phase}` must be true, false or a mapping with `message:` and `metadata:`", where)
        return None
    keys.check_keys(config, where, keys.INTERRUPT_POINT, f"in interrupt {phase}", wl.lw.errors, wl.lw.doc.locate)
    if job.routed_by is not None:
        wl.error(f"an interrupt on a job routed by '{job.routed_by}' is not lowered by flowctl", (*job.path, "interrupt"), key=True,
                 hint="put the interrupt on a job that always runs, before or after the routing")
        return None
    return config, where


def pause_node(wl: WorkflowLowering, job: Job, phase: str, config: dict[str, Any], where: PathKey, value: Any,
               scope: dict[tuple[Any, ...], Any], needs: list[str]) -> str | None:
    """Add the pause node; its id, or None after a reported error."""
    node: dict[str, Any] = {"type": "pause", "job": job.id, "phase": phase, "value": value}
    if needs:
        node["needs"] = needs
    fields: dict[Any, PathKey] = {"value": where, "needs": where, "job": where, "phase": where}
    for key in ("message", "metadata"):
        if config.get(key) is None:
            continue
        bound = wl.bind(config[key], (*where, key), scope, _SOURCES)
        if bound is None or not wl.check_native(bound, (*where, key)):
            return None
        node[key] = bound
    if "timeout" in config:
        seconds = keys.parse_duration(config["timeout"])
        if seconds is None or not 0 < seconds <= MAX_PAUSE_TIMEOUT:
            wl.error(f"`timeout` must be a duration such as 10m or a number of seconds, at most {MAX_PAUSE_TIMEOUT:.0f}", (*where, "timeout"))
            return None
        node["timeout"] = seconds
    node_id = wl.lw.unique(f"{job.node}-{phase}")
    wl.lw.add_node(node_id, node, where, fields)
    return node_id


def before(wl: WorkflowLowering, job: Job, bound_input: Any, waits: list[str]) -> tuple[Any, list[str]] | None:
    """With `interrupt.before`: the input the job's node reads (the pause's output) and the
    nodes it waits on instead of `waits`. Without: both unchanged. None after an error."""
    found = point(wl, job, "before")
    if found is None:
        return bound_input, waits  # (a malformed `interrupt:` is reported: the flow does not load)
    config, where = found
    scope = {("input",): bound_input, ("job", "input"): bound_input}
    node_id = pause_node(wl, job, "before", config, where, bound_input, scope, waits)
    if node_id is None:
        return None
    job.paused_before = (node_id, bound_input)
    return f"${{nodes.{node_id}.output}}", [node_id]


def unpaused(job: Job, value: Any) -> Any:
    """`value` (native templates) with the before-pause's output put back as the job input
    it stands for: what a check that names the user's own templates should see."""
    if job.paused_before is None:
        return value
    node_id, job_input = job.paused_before
    try:
        return bind(value, {("nodes", node_id, "output"): job_input})
    except (TemplateError, Unbindable):
        return value


def after(wl: WorkflowLowering, job: Job, result: Any, bound_input: Any) -> Any:
    """With `interrupt.after`: what the job's `output:` reads as `${output}` (the pause's
    output, which stands for `result`). Without: `result`. None after an error."""
    found = point(wl, job, "after")
    if found is None:
        return result
    config, where = found
    scope = {("input",): bound_input, ("output",): result, ("job", "input"): bound_input, ("job", "output"): result}
    node_id = pause_node(wl, job, "after", config, where, result, scope, [])
    if node_id is None:
        return None
    job.paused_after = node_id
    return f"${{nodes.{node_id}.output}}"


def has_after(job: Job) -> bool:
    interrupt = job.data.get("interrupt")
    return isinstance(interrupt, dict) and interrupt.get("after") not in (None, False)

