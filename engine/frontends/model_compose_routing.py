"""model-compose's routing and list jobs, lowered onto the DAG engine's nodes.

    if             →  switch node: per condition, a case `{<op>: value}` → if_true and, when
                      written, a case `{not: {<op>: value}}` → if_false; `otherwise` → default
    switch         →  switch node: a case `{equals: value}` per case; `otherwise` → default
    random-router  →  switch node with `mode: random`, a case per routing with its weight;
                      `session` → `sticky:` (`${context.session_id}` is `${run.session}`)
    filter         →  map node without a per-item node: `where:` keeps the items
    for-each       →  map node whose per-item node is the `do:` job's request or command;
                      `batch_size` is the number of items in flight (default 1)
    delay          →  value node with `delay:` seconds
    loop           →  loop node whose body is the `do:` job's request or command; `while` /
                      `until` (the `where` tree of a filter) → `while:` / `until:`,
                      `max_iteration_count` → `max_iterations`; inside the loop `${input}` is
                      `${loop.input}`, and `${output}` is `${loop.previous}` in `do:` and
                      `${loop.output}` in the condition

A job a router names runs only when the router chooses it (the switch skips the others, and
what depends only on skipped jobs is skipped too). model-compose's condition operators map to
flowctl's (`eq` → `equals`, `not-in` → `not_in`, ...); comparisons are flowctl's, which take
`90` and `"90"` as equal where model-compose's Python `==` does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..loader import PathKey
from . import model_compose_keys as keys
from .model_compose_jobs import Job

if TYPE_CHECKING:
    from .model_compose_jobs import WorkflowLowering


def lower_routing_job(wl: WorkflowLowering, job: Job) -> None:
    lower = {"if": _if, "switch": _switch, "random-router": _random, "filter": _filter, "for-each": _for_each, "delay": _delay, "loop": _loop}[job.type]
    lower(wl, job)


def _subject(wl: WorkflowLowering, job: Job) -> Any:
    """What a router or list job reads: its `input:` (the workflow's input when none)."""
    if "input" not in job.data or job.data["input"] is None:
        return "${input}"
    bound = wl.bind(job.data["input"], (*job.path, "input"))
    if bound is None or not wl.check_native(bound, (*job.path, "input")):
        return None
    return bound


def _operator(wl: WorkflowLowering, written: Any, path: PathKey) -> str | None:
    name = keys.CONDITION_OPERATORS.get(str(written or "eq"))
    if name is None:
        wl.error(f"unknown operator '{written}'", path, hint="operators: " + ", ".join(keys.CONDITION_OPERATORS))
    return name


def _target(wl: WorkflowLowering, name: Any) -> str | None:
    job = wl.jobs.get(str(name))
    return job.node if job is not None else None


def _switch_node(wl: WorkflowLowering, job: Job, node: dict[str, Any]) -> None:
    node = {"type": "switch", "needs": wl.needs_of(job), **node}
    wl.lw.add_node(job.node, node, job.path)
    job.value = f"${{nodes.{job.node}.output}}"


def _entries(wl: WorkflowLowering, job: Job, key: str, inline_keys: tuple[str, ...], section: keys.Section, what: str) -> list[tuple[PathKey, dict[str, Any]]] | None:
    """The mappings listed under `key:` (an if's `conditions`, a switch's `cases`), each with
    where it is written, or the one written inline on the job; None after a reported error."""
    data, path = job.data, job.path
    written = data.get(key)
    if written is None and any(k in data for k in inline_keys):
        return [(path, {k: data[k] for k in inline_keys if k in data})]
    if not isinstance(written, list):
        wl.error(f"`{key}` must be a list of {what}", (*path, key) if key in data else path, key=key not in data)
        return None
    found = []
    for index, entry in enumerate(written):
        where = (*path, key, index)
        if not isinstance(entry, dict):
            wl.error(f"each of `{key}` is a mapping: {what}", where)
            return None
        keys.check_keys(entry, where, section, f"in {key}", wl.lw.errors, wl.lw.doc.locate)
        found.append((where, entry))
    return found


def _route(wl: WorkflowLowering, job: Job, subject: Any, cases: list[dict[str, Any]]) -> None:
    """The switch node: `cases` over `subject`, `otherwise` as its default."""
    node: dict[str, Any] = {"value": subject, "cases": cases}
    if job.data.get("otherwise"):
        node["default"] = _target(wl, job.data["otherwise"])
    _switch_node(wl, job, node)


def _if(wl: WorkflowLowering, job: Job) -> None:
    subject = _subject(wl, job)
    conditions = _entries(wl, job, "conditions", ("operator", "value", "if_true", "if_false"), keys.IF_CONDITION, "operator, value, if_true, if_false")
    if subject is None or conditions is None:
        return
    cases: list[dict[str, Any]] = []
    for index, (where, condition) in enumerate(conditions):
        op = _operator(wl, condition.get("operator"), (*where, "operator"))
        value = wl.bind(condition.get("value"), (*where, "value"))
        if op is None or (value is None and condition.get("value") is not None):
            return
        test = {op: value}
        if condition.get("if_true"):
            cases.append({**test, "to": _target(wl, condition["if_true"]), "name": f"condition {index + 1}"})
        if condition.get("if_false"):
            cases.append({"not": test, "to": _target(wl, condition["if_false"]), "name": f"not condition {index + 1}"})
    _route(wl, job, subject, cases)


def _switch(wl: WorkflowLowering, job: Job) -> None:
    subject = _subject(wl, job)
    written = _entries(wl, job, "cases", ("value", "then"), keys.SWITCH_CASE, "value, then")
    if subject is None or written is None:
        return
    cases = []
    for where, case in written:
        if "then" not in case:
            wl.error("a case needs `then:`: the job it routes to", where, key=True)
            return
        value = wl.bind(case.get("value"), (*where, "value"))
        cases.append({"equals": value, "to": _target(wl, case["then"]), "name": str(case.get("value"))})
    _route(wl, job, subject, cases)


def _random(wl: WorkflowLowering, job: Job) -> None:
    data, path = job.data, job.path
    routings = data.get("routings")
    if not isinstance(routings, list) or not routings:
        wl.error("`routings` must list the jobs to choose from", (*path, "routings") if "routings" in data else path, key="routings" not in data)
        return
    weighted = data.get("mode", "uniform") == "weighted"
    if data.get("mode", "uniform") not in ("uniform", "weighted"):
        wl.error(f"unknown mode '{data['mode']}'", (*path, "mode"), hint="uniform or weighted")
        return
    cases = []
    for index, route in enumerate(routings):
        where = (*path, "routings", index)
        if not isinstance(route, dict) or "to" not in route:
            wl.error("a routing is a mapping with `to:` (and `weight:` in weighted mode)", where)
            return
        keys.check_keys(route, where, keys.RANDOM_ROUTE, "in routing", wl.lw.errors, wl.lw.doc.locate)
        weight = route.get("weight", 1) if weighted else 1
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            wl.error("`weight` must be a number of 0 or more", (*where, "weight"))
            return
        cases.append({"to": _target(wl, route["to"]), "weight": float(weight), "name": str(route["to"])})
    node: dict[str, Any] = {"mode": "random", "cases": cases}
    if data.get("session") is not None:
        # model-compose hashes `{salt}\0{session}\0{job}` the same way: the same session
        # lands on the same job under either engine
        sticky = wl.bind(data["session"], (*path, "session"))
        if sticky is None or not wl.check_native(sticky, (*path, "session")):
            return
        salt = data.get("salt") or f"{wl.workflow_id}:{job.id}"
        if not isinstance(salt, str) or "${" in salt:
            wl.error("`salt` must be plain text", (*path, "salt"))
            return
        node.update(sticky=sticky, salt=salt)
    _switch_node(wl, job, node)


def _where(wl: WorkflowLowering, where: Any, path: PathKey, scope: dict[tuple[Any, ...], Any] | None = None) -> Any:
    """model-compose's `where` tree (`input`/`operator`/`value`, `all`/`any`/`not`) as a
    flowctl condition; a leaf without `input` compares the item itself. `scope`: what
    model-compose names mean where the tree is read (a loop's `${output}`)."""
    if not isinstance(where, dict):
        wl.error("`where` must be a mapping", path)
        return None
    keys.check_keys(where, path, keys.FILTER_WHERE, "in where", wl.lw.errors, wl.lw.doc.locate)
    for combinator in ("all", "any"):
        if combinator in where:
            items = where[combinator]
            if not isinstance(items, list):
                wl.error(f"`{combinator}` must be a list of conditions", (*path, combinator))
                return None
            parts = [_where(wl, item, (*path, combinator, index), scope) for index, item in enumerate(items)]
            return None if any(part is None for part in parts) else {combinator: parts}
    if "not" in where:
        inner = _where(wl, where["not"], (*path, "not"), scope)
        return None if inner is None else {"not": inner}
    op = _operator(wl, where.get("operator"), (*path, "operator"))
    value = wl.bind(where.get("value"), (*path, "value"), scope)
    if op is None:
        return None
    test: dict[str, Any] = {op: value}
    if "input" in where:
        test["value"] = wl.bind(where["input"], (*path, "input"), scope)
    return test


def _list_job_output(wl: WorkflowLowering, job: Job) -> None:
    """A list or loop job's value: its node's output, reshaped by the job's `output:` when written."""
    whole = f"${{nodes.{job.node}.output}}"
    written = job.data.get("output")
    if written is None:
        job.value = whole
        return
    value = wl.bind(written, (*job.path, "output"), {("output",): whole})
    if value is not None and wl.check_native(value, (*job.path, "output")):
        job.value = value


def _filter(wl: WorkflowLowering, job: Job) -> None:
    items = _subject(wl, job)
    if items is None:
        return
    node: dict[str, Any] = {"type": "map", "needs": wl.needs_of(job), "items": items, "max_items": 100000}
    if job.data.get("where") is not None:
        where = _where(wl, job.data["where"], (*job.path, "where"))
        if where is None:
            return
        node["where"] = where
    wl.lw.add_node(job.node, node, job.path, {"items": (*job.path, "input"), "where": (*job.path, "where")})
    _list_job_output(wl, job)


def _for_each(wl: WorkflowLowering, job: Job) -> None:
    from .model_compose_calls import inline_component_node

    items = _subject(wl, job)
    if items is None:
        return
    batch = job.data.get("batch_size") or 1
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        wl.error("`batch_size` must be a whole number of 1 or more", (*job.path, "batch_size"))
        return
    do = job.data.get("do")
    if not isinstance(do, dict):
        wl.error("`do:` must be the job to run for each item", (*job.path, "do") if "do" in job.data else job.path, key="do" not in job.data)
        return
    inner = inline_component_node(wl, job, do, (*job.path, "do"))
    if inner is None:
        return
    node = {"type": "map", "needs": wl.needs_of(job), "items": items, "concurrency": batch, "max_items": 100000, "node": inner}
    wl.lw.add_node(job.node, node, job.path, {"items": (*job.path, "input"), "node": (*job.path, "do"), "concurrency": (*job.path, "batch_size")})
    _list_job_output(wl, job)


#: what model-compose's names mean inside a loop (`LoopJob._run_iteration`): `${input}` is the
#: loop's input throughout; `${output}` the previous iteration's output in `do:` (null on the
#: first), the iteration just run in the condition
_LOOP_BODY = {("input",): "${loop.input}", ("output",): "${loop.previous}"}
_LOOP_CONDITION = {("input",): "${loop.input}", ("output",): "${loop.output}"}


def _loop(wl: WorkflowLowering, job: Job) -> None:
    from .model_compose_calls import inline_component_node

    data, path = job.data, job.path
    written = [key for key in ("while", "until") if data.get(key) is not None]
    if len(written) != 1:
        wl.error("a loop needs exactly one of `while:` and `until:`", (*path, written[1]) if written else path, key=True)
        return
    cap = data.get("max_iteration_count", 100)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 10_000:
        wl.error("`max_iteration_count` must be a whole number from 1 to 10000", (*path, "max_iteration_count"))
        return
    do = data.get("do")
    if not isinstance(do, dict):
        wl.error("`do:` must be the job to run each iteration", (*path, "do") if "do" in data else path, key="do" not in data)
        return
    initial = None
    if data.get("input") is not None:
        initial = wl.bind(data["input"], (*path, "input"))
        if initial is None or not wl.check_native(initial, (*path, "input")):
            return
    # without its own `input:`, `do:` gets the previous output (the loop's input at first)
    body = inline_component_node(wl, job, do, (*path, "do"), default_input="${loop.previous | ${loop.input}}", scope=_LOOP_BODY)
    condition = _where(wl, data[written[0]], (*path, written[0]), _LOOP_CONDITION)
    if body is None or condition is None or not wl.check_native(condition, (*path, written[0])):
        return
    node = {"type": "loop", "needs": wl.needs_of(job), "input": initial, "node": body, written[0]: condition, "max_iterations": cap}
    wl.lw.add_node(job.node, node, path, {"input": (*path, "input"), "node": (*path, "do"), written[0]: (*path, written[0]),
                                          "max_iterations": (*path, "max_iteration_count")})
    _list_job_output(wl, job)


def _delay(wl: WorkflowLowering, job: Job) -> None:
    data, path = job.data, job.path
    if data.get("mode", "time-interval") != "time-interval":
        wl.error("a delay until a time of day is not supported by flowctl", (*path, "mode"), hint="use `mode: time-interval` with a `duration`")
        return
    seconds = keys.parse_duration(data.get("duration", 0))
    if seconds is None or seconds < 0:
        wl.error("`duration` must be a duration such as 500ms, 3s or a number of seconds", (*path, "duration") if "duration" in data else path)
        return
    value = None
    if data.get("output") is not None:
        value = wl.bind(data["output"], (*path, "output"), {("output",): None})
    node = {"type": "value", "needs": wl.needs_of(job), "delay": seconds, "value": value}
    wl.lw.add_node(job.node, node, path, {"delay": (*path, "duration"), "value": (*path, "output")})
    job.value = f"${{nodes.{job.node}.output}}"


__all__ = ["lower_routing_job"]
