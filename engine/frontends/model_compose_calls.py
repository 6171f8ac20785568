"""model-compose component jobs: a job calls one action of one component.

    http-server / http-client action   →  http-stream node (one request per run)
    shell action                       →  command node (argv only, never a shell string)

The action's templates read `${input...}`: the job's `input:` (the workflow's input when the
job gives none). The job's input is substituted into them, so the request or command reads
the workflow input and the other jobs' outputs directly. The action's `output:` reads the
answer (`${response...}`, `${response[]...}` per chunk of a stream) or, for a shell action,
the command's result (`${result.stdout}`, `${result.exit_code}`), and the job's `output:`
reads that as `${output...}`.

A request node's extraction is its `output:` field, evaluated per chunk or once per body.
A command node's output is its stdout; `${result.stdout}` reads it (`as json` parses it),
`${result.exit_code}` is 0 (a command that fails fails its node, with its exit code and
stderr), and what the job returns is built from it where it is read.
"""

from __future__ import annotations

import difflib
import posixpath
from typing import TYPE_CHECKING, Any

from ..errors import TemplateError
from ..loader import PathKey
from ..templating.ast import Expr
from ..templating.parser import parse_parts
from ..templating.rewrite import references_in
from . import model_compose_interrupt as interrupts
from . import model_compose_keys as keys
from . import shell_arguments as shell
from .model_compose_jobs import ANY_SOURCES, Job

if TYPE_CHECKING:
    from .model_compose import _Lowering
    from .model_compose_jobs import WorkflowLowering

#: a lowered node: its native dict, where it came from, and field origins
Built = tuple[dict[str, Any], PathKey, dict[Any, PathKey]]


def lower_component_job(wl: WorkflowLowering, job: Job) -> None:
    if "hook" in job.data:
        from .model_compose_hooks import lower_hooked_job

        lower_hooked_job(wl, job)
        return
    built = lower_call(wl, job, "${input}")
    if built is not None:
        node, origin, fields = built
        if _resilience(wl, job, node, fields):
            wl.lw.add_node(job.node, node, origin, fields)


def _resilience(wl: WorkflowLowering, job: Job, node: dict[str, Any], fields: dict[Any, PathKey]) -> bool:
    """`retry` → the request node's `retry:` (before the answer's first byte only); `on_error`
    → a fallback value node: null for `ignore`, else its `output:` (which may read
    `${error.message}`). False after a reported error."""
    data, path = job.data, job.path
    if data.get("retry") is not None:
        where = (*path, "retry")
        if node["type"] != "http-stream":
            wl.error("`retry` is lowered for http calls only: flowctl does not run a command twice", where, key=True)
            return False
        retry = data["retry"]
        if isinstance(retry, int) and not isinstance(retry, bool):
            retry = {"max_attempt_count": retry}
        if not isinstance(retry, dict):
            wl.error("`retry` must be a number of attempts or a mapping", where)
            return False
        keys.check_keys(retry, where, keys.RETRY, "in retry", wl.lw.errors, wl.lw.doc.locate)
        attempts = retry.get("max_attempt_count", 1)
        delay = keys.parse_duration(retry.get("delay", 0))
        cap = keys.parse_duration(retry["max_delay"]) if retry.get("max_delay") is not None else 3600.0
        backoff = retry.get("backoff", "fixed")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1 or delay is None or cap is None or backoff not in ("fixed", "exponential"):
            wl.error("`retry` takes max_attempt_count (1 or more), delay and max_delay (durations), backoff (fixed or exponential)", where)
            return False
        node["retry"] = {"max_attempts": attempts, "initial_interval": delay, "backoff_factor": 2.0 if backoff == "exponential" else 1.0,
                         "max_interval": cap, "jitter": False}
        fields["retry"] = where
    on_error = data.get("on_error")
    if on_error is None:
        return True
    where = (*path, "on_error")
    if isinstance(on_error, str) and on_error.lower() == "ignore":
        value: Any = None
    elif isinstance(on_error, dict):
        keys.check_keys(on_error, where, keys.ON_ERROR, "in on_error", wl.lw.errors, wl.lw.doc.locate)
        if "to" in on_error:
            return False
        value = wl.bind(on_error.get("output"), (*where, "output"), {("error",): {"message": f"${{nodes.{job.node}.error.message}}"}})
        if value is None and on_error.get("output") is not None:
            return False
    else:
        wl.error("`on_error` must be `ignore` or a mapping with `output:`", where)
        return False
    fallback = wl.lw.unique(f"{job.node}-fallback")
    wl.lw.add_node(fallback, {"type": "value", "value": value}, where, {"value": (*where, "output")})
    node["fallback"] = fallback
    fields["fallback"] = where
    return True


def inline_component_node(wl: WorkflowLowering, parent: Job, data: dict[str, Any], path: PathKey, *, default_input: str = "${item}",
                          scope: dict[tuple[Any, ...], Any] | None = None) -> dict[str, Any] | None:
    """The node a for-each runs per item (or a loop per iteration): its `do:` job, reading
    `default_input` when it gives no `input:`, and `scope` (what `${input}` and `${output}`
    mean inside a loop) in the one it gives. The map (loop) yields that node's output."""
    what = f"a {parent.type} `do:` job"
    if data.get("type", "component") != "component":
        wl.error(f"{what} of type '{data['type']}' is not supported by flowctl", (*path, "type"), hint="call a component")
        return None
    keys.check_keys(data, path, keys.JOB, "in do", wl.lw.errors, wl.lw.doc.locate)
    for key in ("depends_on", "id"):
        if key in data:
            wl.error(f"`{key}:` has no meaning in {what}", (*path, key), key=True)
            return None
    inner = Job(f"{parent.id}.do", path, data, "component", f"{parent.node}-{'item' if parent.type == 'for-each' else 'body'}")
    if "hook" in data:
        from .model_compose_hooks import hooked_body

        return hooked_body(wl, parent, inner, default_input, scope)
    built = lower_call(wl, inner, default_input, needs=False, scope=scope)
    if built is None:
        return None
    node, _, _ = built
    if node["type"] == "command" and inner.value == f"${{nodes.{inner.node}.output as json}}":
        node["stdout"] = "json"  # `${result.stdout as json}`: the command parses its own stdout
        inner.value = f"${{nodes.{inner.node}.output}}"
    if inner.value != f"${{nodes.{inner.node}.output}}" and not (node["type"] == "command" and _reads_stdout_only(inner.value, inner.node)):
        wl.error(f"{what} returns its action's result as it is in flowctl", (*path, "output") if "output" in data else path,
                 hint=f"reshape it in the {parent.type} job's own `output:`")
        return None
    if not node.get("needs"):
        node.pop("needs", None)
    return node


def _reads_stdout_only(value: Any, node: str) -> bool:
    stdout = f"${{nodes.{node}.output}}"
    return bool(value == stdout or value == {"stdout": stdout, "exit_code": 0})


def lower_call(wl: WorkflowLowering, job: Job, default_input: str, *, needs: bool = True, scope: dict[tuple[Any, ...], Any] | None = None) -> Built | None:
    """The node that calls the job's action, with the job's input substituted into it."""
    component = _component(wl, job)
    if component is None or component["type"] is None:
        return None  # reported here, or where the component is written
    action = _action(wl, component, job)
    if action is None:
        return None
    action_path, spec = action
    bound_input = bound_job_input(wl, job, default_input, scope)
    if bound_input is None:
        return None
    # a for-each or loop body waits on nothing of its own but the component's service (its
    # owner waits on the jobs); the owner takes that over as its own upstream
    if not needs and "interrupt" in job.data:
        wl.error("an interrupt inside a `do:` job is not lowered by flowctl: one person would answer it once per item",
                 (*job.path, "interrupt"), key=True, hint="put the interrupt on the job itself")
        return None
    paused = interrupts.before(wl, job, bound_input, wl.needs_of(job) if needs else [])
    if paused is None:
        return None
    bound_input, waits = paused
    upstream = [*component["needs"], *waits]
    if component["type"] == "shell":
        return _command(wl, job, component, action_path, spec, bound_input, upstream)
    return _request(wl, job, component, action_path, spec, bound_input, upstream)


def bound_job_input(wl: WorkflowLowering, job: Job, default_input: str, scope: dict[tuple[Any, ...], Any] | None = None) -> Any:
    """The job's `input:` as a native template tree (`default_input` when it gives none);
    None after a reported error."""
    job_input = job.data.get("input")
    in_path = (*job.path, "input")
    if job_input is None:
        return default_input
    if _is_whole_input(job_input):
        return (scope or {}).get(("input",), "${input}")
    bound_input = wl.bind(job_input, in_path, scope)
    if bound_input is None or not wl.check_native(bound_input, in_path, ("item", "index")):
        return None
    return bound_input


# -- http-server and http-client actions -----------------------------------------------------


def _request(wl: WorkflowLowering, job: Job, component: dict[str, Any], action_path: PathKey, spec: dict[str, Any], bound_input: Any,
             upstream: list[str]) -> Built | None:
    url, url_origin = _url(wl, component, action_path, spec)
    if url is None:
        return None
    given = {("input",): absent_inputs_as_null(bound_input, [spec, component["data"].get("headers")])}
    fields: dict[Any, PathKey] = {"url": url_origin, "needs": (*job.path, "component") if "component" in job.data else job.path}
    node: dict[str, Any] = {"type": "http-stream", "needs": upstream, "stream_format": spec.get("stream_format")}
    ok = True
    for key, value, path in (("url", url, url_origin), ("method", spec.get("method", "POST"), (*action_path, "method"))):
        node[key] = wl.bind(value, path, given)
        ok = ok and node[key] is not None and wl.check_native(node[key], path)
    # a Content-Type of multipart/form-data or x-www-form-urlencoded makes the node send that
    # form (http-stream's `body_format`), as model-compose's http client does
    headers = _headers(wl, component, action_path, spec, fields)
    if headers:
        node["headers"] = {}
        for name, value in headers.items():
            node["headers"][name] = bound = wl.bind(value, fields[("headers", name)], given)
            ok = ok and bound is not None and wl.check_native(bound, fields[("headers", name)])
    for key in ("params", "body"):
        if key in spec:
            node[key] = wl.bind(spec[key], (*action_path, key), given)
            ok = ok and node[key] is not None and wl.check_native(node[key], (*action_path, key))
    streaming = node["stream_format"] is not None
    if "completion" in spec:
        ok = _completion(wl, node, spec["completion"], (*action_path, "completion"), given, fields) and ok
    if "output" in spec:
        action_output = wl.bind(spec["output"], (*action_path, "output"), given)
        if action_output is None or not wl.check_native(action_output, (*action_path, "output"), ("response", "response[]")):
            return None
        if not streaming and _reads_chunks(action_output):
            wl.error("an `output:` that reads `response[]` (one stream chunk) needs `stream_format: json` or `text`", (*action_path, "output"))
            return None
        if "completion" not in node and any(ref.source == "result" for ref in references_in(action_output)):
            wl.error("`${result...}` is what a callback brings: this action has no `completion:`", (*action_path, "output"), key=True,
                     hint="add `completion: {type: callback, wait_for: ...}` and a top-level `listener:`, or read the answer as `${response...}`")
            return None
    else:
        action_output = None
    if not ok:
        return None
    job_output = job.data.get("output") if job.own_mapping else None
    identity, hint = identity_output(job_output)
    if interrupts.has_after(job):
        # the job's output mapping reads the pause after the request, not the request
        if action_output is not None:
            node["output"] = action_output
        reviewed = interrupts.after(wl, job, f"${{nodes.{job.node}.output}}", bound_input)
        if reviewed is None:
            return None
        job.hint = hint if identity else None
        job.value = reviewed if identity else wl.bind(job_output, (*job.path, "output"), {("output",): reviewed})
        if job.value is None or not wl.check_native(job.value, (*job.path, "output")):
            return None
        return node, action_path, fields
    if identity:
        job.hint = hint
        if action_output is not None:
            node["output"] = action_output
    else:
        out_path = (*job.path, "output")
        whole = action_output if action_output is not None else ("${response[]}" if streaming else "${response}")
        node["output"] = wl.bind(job_output, out_path, {("output",): whole})
        if node["output"] is None or not wl.check_native(node["output"], out_path, ("response", "response[]")):
            return None
        fields["output"] = out_path
    if job.own_mapping and "name" in job.data:  # (a workflow's own `name:` is the workflow's)
        node["description"] = job.data["name"]
        fields["description"] = (*job.path, "name")
    job.value = f"${{nodes.{job.node}.output}}"
    return node, action_path, fields


def absent_inputs_as_null(bound_input: Any, action: Any) -> Any:
    """The job's input, with each name the action reads but the job does not pass set to null,
    as model-compose reads it (slack-bot's `attachments`: an optional field sent as null).
    Unless the job passes a name the action never reads: the missing name is then likely that
    one misspelt, and is left to be reported.

    >>> absent_inputs_as_null({"text": "hi"}, {"body": {"text": "${input.text}", "files": "${input.files}"}})
    {'text': 'hi', 'files': None}
    >>> absent_inputs_as_null({"txt": "hi"}, {"body": {"text": "${input.text}"}})
    {'txt': 'hi'}
    """
    if not isinstance(bound_input, dict):
        return bound_input
    try:
        read = {ref.path[0] for ref in references_in(action, ANY_SOURCES) if ref.source == "input" and ref.path and isinstance(ref.path[0], str)}
    except TemplateError:
        return bound_input  # reported where the template is bound
    if set(bound_input) - read:
        return bound_input
    return {**bound_input, **dict.fromkeys(sorted(read - set(bound_input)))}


def _completion(wl: WorkflowLowering, node: dict[str, Any], completion: Any, path: PathKey, given: dict[tuple[Any, ...], Any], fields: dict[Any, PathKey]) -> bool:
    """An action's `completion: {type: callback, wait_for}` → the request's `completion:` on
    the file's http-callback listener; the answer is then read whole. False after an error."""
    wait_for = None
    if isinstance(completion, dict) and completion.get("wait_for") is not None:
        if any(ref.source in ("response", "response[]") for ref in references_in(completion["wait_for"], ANY_SOURCES)):
            wl.error("flowctl waits for an identity known before the request is sent (so a callback that comes before the answer "
                     "is not lost): `wait_for` cannot read `${response...}`", (*path, "wait_for"),
                     hint="send the upstream an id to call back with, such as `task_id: ${context.run_id}`, and wait for that")
            return False
        wait_for = wl.bind(completion["wait_for"], (*path, "wait_for"), given)
        if wait_for is None or not wl.check_native(wait_for, (*path, "wait_for")):
            return False
    lowered = wl.lw.listeners.completion(completion, path, wait_for)
    if lowered is None:
        return False
    if node["stream_format"] is not None:
        wl.error("an action with `completion:` reads its answer whole: remove `stream_format`", path)
        return False
    node["completion"] = lowered
    fields["completion"] = path
    if "wait_for" in lowered:
        fields[("completion", "wait_for")] = (*path, "wait_for")
    return True


def _url(wl: WorkflowLowering, component: dict[str, Any], action_path: PathKey, spec: dict[str, Any]) -> tuple[str | None, PathKey]:
    path, endpoint = spec.get("path"), spec.get("endpoint")
    for key, value in (("path", path), ("endpoint", endpoint)):
        if value is not None and not isinstance(value, str):
            wl.error(f"`{key}` must be a string", (*action_path, key))
            return None, action_path
    if component["type"] == "http-server":
        return component["base_url"] + (path or ""), (*action_path, "path") if path is not None else action_path
    if endpoint and path:
        wl.error("write either `endpoint:` (a full URL) or `path:` (after the component's base_url), not both", (*action_path, "path"), key=True)
        return None, action_path
    if endpoint:
        return endpoint, (*action_path, "endpoint")
    if path:
        base_url = component.get("base_url")
        if not base_url:
            wl.error("`path:` needs `base_url:` on the component", (*action_path, "path"), key=True, hint="or give the full URL as `endpoint:`")
            return None, action_path
        return str(base_url).rstrip("/") + "/" + path.lstrip("/"), (*action_path, "path")
    wl.error("this action needs `endpoint:` (a full URL) or `path:`", action_path, key=True)
    return None, action_path


def _headers(wl: WorkflowLowering, component: dict[str, Any], action_path: PathKey, spec: dict[str, Any], fields: dict[Any, PathKey]) -> dict[str, Any]:
    """The component's `headers:` (sent with every request) under the action's own."""
    merged: dict[str, Any] = {}
    for source, path in ((component["data"].get("headers"), (*component["path"], "headers")), (spec.get("headers"), (*action_path, "headers"))):
        if source is None:
            continue
        if not isinstance(source, dict):
            wl.error("`headers` must be a mapping of Name: value", path)
            continue
        merged.update(source)
        fields.update({("headers", name): (*path, name) for name in source})
    return merged


def _reads_chunks(value: Any) -> bool:
    return any(ref.source == "response[]" for ref in references_in(value))


# -- shell actions -----------------------------------------------------------------------------


def _command(wl: WorkflowLowering, job: Job, component: dict[str, Any], action_path: PathKey, spec: dict[str, Any], bound_input: Any,
             upstream: list[str]) -> Built | None:
    lw = wl.lw
    given = {("input",): bound_input}
    command_path = (*action_path, "command")
    command = spec.get("command")
    if not (isinstance(command, list) and command and all(isinstance(item, (str, int, float)) for item in command)):
        hint = "several commands in one action are not lowered: give each its own action and job" if isinstance(command, list) and command and isinstance(command[0], list) else None
        wl.error("`command` must be one command: a list of arguments", command_path, hint=hint)
        return None
    argv = []
    for index, item in enumerate(command):
        bound = wl.bind(str(item), (*command_path, index), given)
        if bound is None or not wl.check_native(bound, (*command_path, index)):
            return None
        argv.append(bound if isinstance(bound, str) else str(bound))
    argv = _without_answers_in_code(wl, job, argv)
    written = len(argv)
    safe_argv = _code_free_argv(wl, argv, command_path)
    if safe_argv is None:
        return None
    argv = safe_argv
    fields: dict[Any, PathKey] = {"argv": command_path, "needs": (*job.path, "component") if "component" in job.data else job.path}
    # arguments moved out of a script are located at the script
    script_at = shell.code_index(argv)
    fields.update({("argv", index): (*command_path, index if index < written or script_at is None else script_at)
                   for index in range(len(argv))})
    node: dict[str, Any] = {"type": "command", "needs": upstream, "argv": argv}
    if spec.get("stdin") is not None:
        node["stdin"] = wl.bind(spec["stdin"], (*action_path, "stdin"), given)
        if node["stdin"] is None or not wl.check_native(node["stdin"], (*action_path, "stdin")):
            return None
    env = {**component["env"], **(spec.get("env") or {})}
    if env:
        node["env"] = wl.bind(env, (*action_path, "env"), given)
        if node["env"] is None:
            return None
        fields["env"] = (*action_path, "env") if spec.get("env") else (*component["path"], "env")
    if component.get("runtime_env"):  # a virtualenv runtime: its bin/ first on PATH (native templates, bound already)
        node["env"] = {**component["runtime_env"], **node.get("env", {})}
    cwd = _working_dir(lw, component, spec)
    if component.get("container"):  # a container runtime: `working_dir` is a path in the container
        node["container"] = component["container"]
        if spec.get("working_dir") is not None:
            node["container"] = {**node["container"], "options": [*node["container"]["options"], "-w", str(spec["working_dir"])]}
    elif cwd is not None:
        node["cwd"] = cwd
        fields["cwd"] = (*action_path, "working_dir") if spec.get("working_dir") else (*component["path"], "base_dir")
    if "timeout" in spec:
        seconds = keys.parse_duration(spec["timeout"])
        if seconds is None or seconds <= 0:
            wl.error("`timeout` must be a duration such as 30s or a number of seconds", (*action_path, "timeout"))
            return None
        node["timeout"] = seconds
    # what the action's `${result...}` reads: stdout as the node yields it; a failing command
    # fails the node, so the exit code a job can see is 0
    result = {"stdout": f"${{nodes.{job.node}.output}}", "exit_code": 0}
    action_output = wl.bind(spec.get("output", "${result}"), (*action_path, "output"), {**given, ("result",): result})
    if action_output is None or not wl.check_native(action_output, (*action_path, "output")):
        return None
    action_output = interrupts.after(wl, job, action_output, bound_input)
    if action_output is None:
        return None
    job_output = job.data.get("output") if job.own_mapping else None
    identity, hint = identity_output(job_output)
    if identity:
        job.hint = hint
        value = action_output
    else:
        value = wl.bind(job_output, (*job.path, "output"), {("output",): action_output})
        if value is None or not wl.check_native(value, (*job.path, "output")):
            return None
    if job.own_mapping and "name" in job.data:
        node["description"] = job.data["name"]
        fields["description"] = (*job.path, "name")
    job.value = value
    return node, action_path, fields


def _without_answers_in_code(wl: WorkflowLowering, job: Job, argv: list[str]) -> list[str]:
    """A before-pause's answer replaces the job's input; where that input is written into
    shell code, the answer (request data) would be parsed as code. There the command reads
    the input as the job got it (its per-run values then passed as arguments) and the pause
    takes no answer, saying why."""
    index = shell.code_index(argv)
    if job.paused_before is None or index is None:
        return argv
    node_id = job.paused_before[0]
    if not any(ref.dotted.startswith(f"nodes.{node_id}.") or ref.dotted == f"nodes.{node_id}" for ref in references_in(argv[index])):
        return argv
    program = posixpath.basename(argv[0])
    wl.lw.nodes[node_id]["no_answer_because"] = (f"job '{job.id}' writes its input into the code `{program} {argv[index - 1]}` runs, "
                                                 "and an answer must never be parsed as code")
    unpaused: list[str] = interrupts.unpaused(job, argv)
    return unpaused


def _code_free_argv(wl: WorkflowLowering, argv: list[str], command_path: PathKey) -> list[str] | None:
    """A program that runs its `-c`/`-e` argument as code (`sh -c`, `python3 -c`) must not get
    a per-run value inside that code: request data would become shell or program syntax. A
    shell's script gets each such value as a positional parameter instead (`shell_arguments`);
    any other program's code is refused. None when an error was reported."""
    index = shell.code_index(argv)
    if index is None:
        return argv
    program = posixpath.basename(argv[0])
    runtime = [ref for ref in references_in(argv[index]) if ref.source in shell.RUNTIME_SOURCES]
    if not runtime:
        return argv
    whole = shell.whole_reference(argv[index]) if program in shell.SHELLS else None
    if whole is not None and whole.source == "hook" and whole.path[:1] == ("input",):
        return argv  # the hooked job's input: checked where the hook is lowered (model_compose_hooks)
    why = "a value from a request must never be parsed as code"
    if program in shell.SHELLS:
        try:
            code, values = shell.as_positional(argv[index], shell.taken_parameters(argv, index))
        except shell.NotAnArgument as exc:
            why = str(exc)
        else:
            return shell.with_parameters([*argv[:index], code, *argv[index + 1:]], index, values)
    flag = argv[index - 1]
    wl.error(f"'{runtime[0].dotted}' would become part of the code `{program} {flag}` runs: {why}",
             (*command_path, index),
             hint=f'pass it as an argument after the script instead: [{program}, {flag}, \'... "$1" ...\', {program}, "${{{runtime[0].dotted}}}"]'
             if program in shell.SHELLS else "pass it as an argument after the script (sys.argv, process.argv) instead")
    return None


def _working_dir(lw: _Lowering, component: dict[str, Any], spec: dict[str, Any]) -> str | None:
    """model-compose: the action's `working_dir` under the component's `base_dir`, else
    `base_dir`; relative paths start at the flow file's folder."""
    base: str | None = component.get("base_dir")
    working = spec.get("working_dir")
    if working is None:
        return base
    if base is not None:
        return posixpath.join(base, str(working))
    return lw.resolve_dir(str(working))


# -- the component and action a job names --------------------------------------------------------


def _component(wl: WorkflowLowering, job: Job) -> dict[str, Any] | None:
    lw, data = wl.lw, job.data
    ref = data.get("component", "__default__")
    where = (*job.path, "component") if "component" in data else job.path
    if isinstance(ref, dict):
        wl.error("a component written inside a job is not supported by flowctl", where, key=True,
                 hint="declare the component under `components:` and name it here by id")
        return None
    if not lw.components:
        if not lw.errors:  # else a component was already reported
            wl.error("this job calls a component, but the flow has none", where, key="component" not in data, hint="add `component:`")
        return None
    if ref == "__default__":
        candidates = list(lw.components.values())
        if len(candidates) > 1:
            candidates = [c for c in candidates if c["data"].get("default") is True]
        if len(candidates) == 1:
            return candidates[0]
        wl.error("this job names no component and the flow has several", where, key="component" not in data,
                 hint="name one with `component: <id>`, or mark one `default: true`")
        return None
    component = lw.components.get(str(ref))
    if component is None:
        match = difflib.get_close_matches(str(ref), list(lw.components), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "components: " + ", ".join(lw.components)
        wl.error(f"unknown component '{ref}'", where, hint=hint)
    return component


def _action(wl: WorkflowLowering, component: dict[str, Any], job: Job) -> tuple[PathKey, dict[str, Any]] | None:
    actions: dict[str, tuple[PathKey, dict[str, Any]]] = component["actions"]
    ref = job.data.get("action", "__default__")
    where = (*job.path, "action") if "action" in job.data else job.path
    if not actions:
        wl.error(f"{component['label']} has no `action:` to call", component["path"], key=True,
                 hint="add `action:` with method, path, body, stream_format and output")
        return None
    if ref == "__default__":
        candidates = list(actions.values())
        if len(candidates) > 1:
            candidates = [a for a in candidates if a[1].get("default") is True]
        if len(candidates) == 1:
            return candidates[0]
        wl.error(f"this job names no action and {component['label']} has several", where, key="action" not in job.data,
                 hint="name one with `action: <id>`, or mark one `default: true`")
        return None
    if str(ref) not in actions:
        match = difflib.get_close_matches(str(ref), list(actions), n=1, cutoff=0.5)
        hint = f"did you mean '{match[0]}'?" if match else "actions: " + ", ".join(actions)
        wl.error(f"unknown action '{ref}' of {component['label']}", where, hint=hint)
        return None
    return actions[str(ref)]


def _is_whole_input(value: Any) -> bool:
    return isinstance(value, str) and value.replace(" ", "") == "${input}"


def identity_output(value: Any) -> tuple[bool, Any]:
    """(True, its `as` clause) when a job's `output:` is its result as it is: absent,
    `${output}`, or `${output as text;sse-text}`; (False, None) when it reshapes it."""
    if value is None:
        return True, None
    if not isinstance(value, str):
        return False, None
    try:
        parts = parse_parts(value, ANY_SOURCES)
    except Exception:
        return False, None
    if len(parts) == 1 and isinstance(parts[0], Expr):
        ref = parts[0].reference
        if ref.source == "output" and not ref.path and not ref.has_default:
            return True, ref.spec
    return False, None


__all__ = ["Built", "bound_job_input", "identity_output", "lower_call", "lower_component_job"]
