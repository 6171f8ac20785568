"""model-compose's job `hook:`: inline Python run before and after a component job's call,
lowered onto a native `hook` node (`nodes/hook.py`) that wraps the call.

    job:                                   nodes:
      component: shell-executor              job:
      input: {command: "ls"}                   type: hook
      hook:                                    job: __job__
        before: {script: ...}       →          input: {command: ls}
        after: [{script: ...}]                 before: [{script: ..., at: flow.yml:19:17}]
      output: ${output.line_count}             node: {type: command, argv: [..., "${hook.input.command}"]}
                                               output: ${hook.output}     # the action's output
                                               after: [{script: ...}]
                                           the job's `output:` reads ${nodes.job.output}

As in model-compose (`Job._apply_before_hooks` / `_apply_after_hooks`): the before hooks get
the job's rendered input and each returns the next input; the call reads the last one; the
after hooks get that input and the action's output, and each returns the next output; the
job's own `output:` then reads the last. A hook that returns None makes the value null. A
`do:` job of a loop or for-each is hooked the same way, per iteration (per item), with
`job_id` `<job>[do]` as model-compose names it.

The hook node is a wrapper, not nodes before and after the call's node, because a loop's
(a map's) body is one node: the hooks must run inside it, once per iteration.

What differs from model-compose, on purpose: the hook runs in a child Python process, not in
flowctl's (its values go there as JSON, so they must be JSON; what it prints goes to flowctl's
log, never into the output), and each call has a timeout (`timeout:` beside `script:`, 30 s by
default). A script that does not compile, or defines no `hook`, is an error at load time.
"""

from __future__ import annotations

import ast
import posixpath
from typing import TYPE_CHECKING, Any

from ..errors import FlowError, Location
from ..loader import PathKey
from ..templating.rewrite import Unbindable, bind
from . import model_compose_keys as keys
from . import shell_arguments as shell
from .model_compose_calls import Built, bound_job_input, identity_output, lower_call
from .model_compose_jobs import Job

if TYPE_CHECKING:
    from .model_compose_jobs import WorkflowLowering

#: seconds a hook call may run when its `timeout:` is not written
DEFAULT_TIMEOUT = 30.0


def lower_hooked_job(wl: WorkflowLowering, job: Job) -> None:
    """A component job with `hook:`: a hook node around its call, under the job's node id."""
    for key in ("retry", "on_error"):
        if job.data.get(key) is not None:
            wl.error(f"`{key}` on a job with `hook:` is not lowered by flowctl", (*job.path, key), key=True,
                     hint="handle the failure in the hook (try/except), or move the call into a job of its own")
            return
    built = _hooked(wl, job, "${input}", None, job.id, needs=True)
    if built is None:
        return
    wrapper, origin, fields = built
    wl.lw.add_node(job.node, wrapper, origin, fields)
    result = f"${{nodes.{job.node}.output}}"
    written = job.data.get("output") if job.own_mapping else None
    identity, hint = identity_output(written)
    if identity:
        job.hint = hint
        job.value = result
        return
    out_path = (*job.path, "output")
    value = wl.bind(written, out_path, {("output",): result})
    if value is not None and wl.check_native(value, out_path):
        job.value = value


def hooked_body(wl: WorkflowLowering, parent: Job, inner: Job, default_input: str, scope: dict[tuple[Any, ...], Any] | None) -> dict[str, Any] | None:
    """A loop's or for-each's `do:` job with `hook:`: the hook node that is its body."""
    if inner.data.get("output") is not None and not identity_output(inner.data["output"])[0]:
        wl.error(f"a {parent.type} `do:` job returns its hooks' result as it is in flowctl", (*inner.path, "output"),
                 hint=f"reshape it in the last after hook, or in the {parent.type} job's own `output:`")
        return None
    built = _hooked(wl, inner, default_input, scope, f"{parent.id}[do]", needs=False)
    return built[0] if built is not None else None


def _hooked(wl: WorkflowLowering, job: Job, default_input: str, scope: dict[tuple[Any, ...], Any] | None, name: str, *, needs: bool) -> Built | None:
    hooks = _hooks(wl, job)
    if hooks is None:
        return None
    bound_input = bound_job_input(wl, job, default_input, scope)
    if bound_input is None:
        return None
    # the call reads the before hooks' result where it would read the job's input; its own
    # output is what the after hooks get (the job's `output:` is applied to their result)
    call = Job(job.id, job.path, {k: v for k, v in job.data.items() if k not in ("input", "output", "hook")}, "component", job.node)
    built = lower_call(wl, call, "${hook.input}", needs=needs)
    if built is None:
        return None
    node, origin, fields = built
    if node.get("stream_format") is not None:
        wl.error("a job with `hook:` cannot stream: its hooks take the whole output", (*job.path, "hook"), key=True,
                 hint="set `stream_format` off in the action, or drop the hook")
        return None
    if node["type"] == "command" and not _code_from_hook(wl, job, node, bound_input):
        return None
    try:
        output = bind(call.value, {("nodes", job.node, "output"): "${hook.output}"})
    except Unbindable as exc:
        wl.error(str(exc), (*job.path, "hook"), key=True, hint=exc.hint)
        return None
    wrapper: dict[str, Any] = {"type": "hook", "job": name, "input": bound_input, **hooks, "node": node, "output": output}
    upstream = node.pop("needs", [])
    if upstream:
        wrapper["needs"] = upstream
    moved: dict[Any, PathKey] = {("node", *(name if isinstance(name, tuple) else (name,))): path for name, path in fields.items() if name != "needs"}
    moved.update({"node": origin, "input": (*job.path, "input") if "input" in job.data else job.path, "needs": fields.get("needs", job.path)})
    for phase in ("before", "after"):
        moved.update({(phase, index): hook_path for index, hook_path in enumerate(_entry_paths(job, phase))})
    return wrapper, job.path, moved


def _code_from_hook(wl: WorkflowLowering, job: Job, node: dict[str, Any], bound_input: Any) -> bool:
    """`[sh, -c, "${input.command}"]`: the shell runs code the before hooks return, made from
    the job's input. The hooks are the operator's code, but a request value in that input
    would reach the shell as code through them: such values become the shell's positional
    parameters (`shell_arguments`) before the hooks see the code. False after an error."""
    argv: list[str] = node["argv"]
    index = shell.code_index(argv) if posixpath.basename(argv[0]) in shell.SHELLS else None
    ref = shell.whole_reference(argv[index]) if index is not None else None
    if index is None or ref is None or ref.source != "hook":
        return True
    field: Any = bound_input
    holder: Any = None
    for step in ref.path[1:]:
        if not isinstance(field, dict) or not isinstance(step, str) or step not in field:
            field = None
            break
        holder, field = field, field[step]
    in_path = (*job.path, "input") if "input" in job.data else job.path
    if not isinstance(field, str) or holder is None or ref.spec is not None or ref.has_default:
        wl.error(f"the shell runs `${{{ref.dotted}}}` as code: write that code in this job's `input:` as text", in_path,
                 hint="a value from a request must never be parsed as code; the hooks may change the code the input gives")
        return False
    try:
        code, values = shell.as_positional(field, shell.taken_parameters(argv, index))
    except shell.NotAnArgument as exc:
        wl.error(f"this job's input gives the code the shell runs (`${{{ref.dotted}}}`), and a value in it would become part of that code: {exc}",
                 in_path, hint="a value from a request must never be parsed as code")
        return False
    holder[ref.path[-1]] = code
    node["argv"] = shell.with_parameters(argv, index, values)
    return True


def _hooks(wl: WorkflowLowering, job: Job) -> dict[str, list[dict[str, Any]]] | None:
    """`hook:` as the hook node's `before:` and `after:` lists; None after a reported error."""
    path = (*job.path, "hook")
    raw = job.data["hook"]
    if not isinstance(raw, dict):
        wl.error("`hook` must be a mapping with `before:` and/or `after:`", path)
        return None
    reported = len(wl.lw.errors)
    keys.check_keys(raw, path, keys.HOOKS, "in hook", wl.lw.errors, wl.lw.doc.locate)
    lowered: dict[str, list[dict[str, Any]]] = {}
    for phase in ("before", "after"):
        entries = raw.get(phase)
        if entries is None:
            continue
        if not isinstance(entries, (dict, list)):
            wl.error(f"`{phase}` must be a hook (`script:`) or a list of them", (*path, phase))
            continue
        lowered[phase] = [hook for hook_path in _entry_paths(job, phase) if (hook := _hook(wl, job, hook_path)) is not None]
    return lowered if len(wl.lw.errors) == reported else None


def _entry_paths(job: Job, phase: str) -> list[PathKey]:
    """Where each hook of `phase` is: one mapping, or a list of them (as model-compose takes)."""
    path = (*job.path, "hook", phase)
    entries = job.data.get("hook", {}).get(phase)
    if isinstance(entries, list):
        return [(*path, index) for index in range(len(entries))]
    return [path] if isinstance(entries, dict) else []


def _hook(wl: WorkflowLowering, job: Job, path: PathKey) -> dict[str, Any] | None:
    entry: Any = job.data
    for step in path[len(job.path):]:
        entry = entry[step]
    if not isinstance(entry, dict):
        wl.error("a hook must be a mapping with `script:`", path)
        return None
    keys.check_keys(entry, path, keys.HOOK, "in hook", wl.lw.errors, wl.lw.doc.locate)
    script = entry.get("script")
    if not isinstance(script, str) or not script.strip():
        wl.error("a hook needs `script:`: Python that defines `def hook(...)`", (*path, "script") if "script" in entry else path, key="script" not in entry)
        return None
    located = wl.lw.doc.locate((*path, "script"))
    # a block scalar (`script: |`) starts on the line after its indicator
    first_line = located.line + 1 if "\n" in script else located.line
    problem = _script_problem(script, located.file, first_line)
    if problem is not None:
        message, line = problem
        wl.lw.errors.append(FlowError(message, location=Location(located.file, line, located.column) if line else located,
                                           hint="a hook script defines `def hook(input, *, task_id, job_id, run_id, phase)` (after: `hook(input, output, *, ...)`)"))
        return None
    timeout = DEFAULT_TIMEOUT
    if "timeout" in entry:
        seconds = keys.parse_duration(entry["timeout"])
        if seconds is None or not 0 < seconds <= 3600:
            wl.error("`timeout` must be a duration up to 1h, such as 30s, or a number of seconds", (*path, "timeout"))
            return None
        timeout = seconds
    return {"script": script, "at": str(located), "file": located.file, "line": first_line, "timeout": timeout}


def _script_problem(script: str, file: str, first_line: int) -> tuple[str, int | None] | None:
    """Why the script cannot be a hook (and the file line at fault), or None. Parsing only:
    nothing of it runs in flowctl's process."""
    try:
        tree = ast.parse("\n" * (first_line - 1) + script, filename=file)
    except SyntaxError as exc:
        return f"the hook script does not compile: {exc.msg}", exc.lineno
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and statement.name == "hook":
            return None
        if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.ImportFrom, ast.Import)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target] if isinstance(statement, ast.AnnAssign) else []
            names = {alias.asname or alias.name for alias in statement.names} if isinstance(statement, (ast.Import, ast.ImportFrom)) else set()
            if "hook" in names or any(isinstance(target, ast.Name) and target.id == "hook" for target in targets):
                return None
    return "the hook script defines no function named `hook`", None


__all__ = ["DEFAULT_TIMEOUT", "hooked_body", "lower_hooked_job"]
