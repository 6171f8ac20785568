"""Which model-compose keys flowctl understands, and the checks that keep the rest from
being silently ignored.

Every mapping of a model-compose file is checked against a `Section`: a key flowctl lowers
is `supported`; a key model-compose has but flowctl does not implement is `unsupported`
(an error at its line); a key whose model-compose *default* means "nothing to do" is a
`noop` and is accepted only with that value; anything else is unknown, with the closest
known key suggested. The key names follow model-compose's own pydantic config models
(`mindor.dsl.schema`: ComposeConfig, HttpServerControllerConfig, CommonWebUIConfig,
HttpServerComponentConfig / HttpServerManageConfig, HttpClientComponentConfig,
HttpServerActionConfig / HttpClientActionConfig, WorkflowConfig, ComponentJobConfig).

    >>> errors = []
    >>> check_keys({"prot": 8000}, ("component",), HTTP_SERVER_COMPONENT, "in component", errors, lambda path, key=False: None)
    >>> str(errors[0])
    "unknown key 'prot' in component (did you mean 'port'?)"
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from ..errors import FlowError, Location
from ..loader import PathKey

Locate = Callable[..., Location | None]


@dataclass(frozen=True)
class Section:
    supported: frozenset[str]
    unsupported: frozenset[str] = frozenset()
    #: key -> the values that mean "model-compose's default": accepted, nothing to lower
    noop: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    #: documented model-compose keys that have no meaning in flowctl (accepted, ignored)
    ignored: frozenset[str] = frozenset()
    #: `noop` keys whose accepted value is not model-compose's default (said so in errors)
    noop_not_default: frozenset[str] = frozenset()

    @property
    def known(self) -> list[str]:
        return sorted(self.supported | self.unsupported | set(self.noop) | self.ignored)

    def with_keys(self, supported: Set[str] = frozenset(), unsupported: Set[str] = frozenset()) -> Section:
        return Section(self.supported | supported, self.unsupported | unsupported, self.noop, self.ignored, self.noop_not_default)


_RUNTIME_NATIVE = ("native", {"type": "native"})

TOP = Section(
    supported=frozenset({"controller", "component", "components", "workflow", "workflows", "gateway", "gateways", "listener", "listeners"}),
    unsupported=frozenset({
        "logger", "loggers",
        "system", "systems", "tracer", "tracers",
    }),
)

CONTROLLER = Section(
    supported=frozenset({"type", "name", "host", "port", "base_path", "max_concurrent_count", "shutdown_timeout", "webui", "adapter", "adapters"}),
    unsupported=frozenset({"queue", "shutdown_pending_period"}),
    noop={"runtime": _RUNTIME_NATIVE, "threaded": (False,), "origins": ("*",)},
)

# model-compose 0.4.100+ moved the HTTP server under `controller.adapter` (or a one-item
# `adapters:` list): HttpServerControllerAdapterConfig. Its WebSocket endpoint is on by
# default there; flowctl has none, so only `websocket: false` is accepted.
HTTP_ADAPTER = Section(
    supported=frozenset({"type", "host", "port", "base_path"}),
    unsupported=frozenset({"static"}),
    noop={"origins": ("*",), "websocket": (False,)},
    noop_not_default=frozenset({"websocket"}),
)
HTTP_ADAPTER_TYPES = frozenset({"http-server", "mcp-server"})

# model-compose's listeners (HttpCallbackListenerConfig, HttpTriggerListenerConfig): the
# single-route form writes one route's keys on the listener itself. `bulk`/`item` (several
# callbacks or runs in one request) are not lowered.
_LISTENER_COMMON = Section(
    # `id` names the node (default `listener`)
    supported=frozenset({"id", "type", "host", "port", "base_path"}),
    noop={"runtime": _RUNTIME_NATIVE, "max_concurrent_count": (0,), "bulk": (False,)},
)
CALLBACK_ROUTE = Section(
    supported=frozenset({"path", "method", "identify_by", "result", "status", "success_when", "fail_when"}),
    unsupported=frozenset({"item"}),
    noop={"bulk": (False,)},
)
TRIGGER_ROUTE = Section(
    supported=frozenset({"path", "method", "workflow", "input"}),
    unsupported=frozenset({"item"}),
    noop={"bulk": (False,)},
)
LISTENER_TYPES = {
    "http-callback": _LISTENER_COMMON.with_keys(supported=CALLBACK_ROUTE.supported | {"callbacks"}, unsupported=CALLBACK_ROUTE.unsupported),
    "http-trigger": _LISTENER_COMMON.with_keys(supported=TRIGGER_ROUTE.supported | {"triggers"}, unsupported=TRIGGER_ROUTE.unsupported),
}
#: an action's `completion: {type: callback}` (`timeout` is flowctl's: model-compose waits forever)
CALLBACK_COMPLETION = Section(supported=frozenset({"type", "wait_for", "timeout"}), noop={"stream_format": (None,)})

#: what to use instead of a controller (or adapter) type flowctl does not serve
CONTROLLER_HINTS = {
    "queue-subscriber": "flowctl takes runs over HTTP: use `type: http-server`, and let the worker that reads the queue "
                        "POST each task to /api/workflows/runs (several `flowctl up` behind the queue scale the same way)",
}

# model-compose's web UI keys (CommonWebUIConfig: driver, host, port). flowctl serves its own
# UI from the same process as the API, so `driver: gradio` and `host` are accepted and
# ignored (the UI binds where the API binds); `port` becomes `server.ui_port`. The static and
# dynamic drivers serve the user's own files or command: not supported.
WEBUI = Section(
    supported=frozenset({"port", "driver"}),
    unsupported=frozenset({"static_dir", "server_dir", "command"}),
    ignored=frozenset({"host"}),
)
WEBUI_DRIVERS = ("gradio",)

_COMPONENT_COMMON = Section(
    # `runtime` is checked on its own (`component_runtime`): several values mean "a local process"
    supported=frozenset({"id", "type", "default", "action", "actions", "headers", "runtime"}),
    noop={"max_concurrent_count": (0,)},
)

MANAGE_SCRIPTS = ("install", "build", "start", "clean")

HTTP_SERVER_COMPONENT = _COMPONENT_COMMON.with_keys(
    # `host` is a flowctl extension: where the managed server listens (default 127.0.0.1)
    supported={"manage", "port", "base_path", "host", "install", "build", "start"},
    unsupported={"clean"},
)

HTTP_CLIENT_COMPONENT = _COMPONENT_COMMON.with_keys(supported={"base_url"}, unsupported={"rate_limit"})

# ShellComponentConfig (local driver): `env` and `base_dir` apply to every action
SHELL_COMPONENT = Section(
    supported=_COMPONENT_COMMON.supported - {"headers"} | {"manage", "install", "env", "base_dir"},
    unsupported=frozenset({"clean", "connection"}),
    noop={**_COMPONENT_COMMON.noop, "driver": ("local",)},
)

MANAGE = Section(
    supported=frozenset({"scripts", "install", "build", "start", "working_dir", "env"}),
    unsupported=frozenset({"clean"}),
)

SCRIPTS = Section(supported=frozenset({"install", "build", "start"}), unsupported=frozenset({"clean"}))

HTTP_SERVER_ACTION = Section(
    supported=frozenset({"id", "default", "output", "path", "method", "headers", "body", "params", "stream_format", "completion"}),
)

HTTP_CLIENT_ACTION = Section(
    supported=HTTP_SERVER_ACTION.supported | {"endpoint"},
    unsupported=HTTP_SERVER_ACTION.unsupported,
    noop={"stream_fragmented": (True,)},
)

# ShellActionConfig: `command` is one argv, or several to run one after the other
SHELL_ACTION = Section(
    supported=frozenset({"id", "default", "output", "command", "stdin", "working_dir", "env", "timeout"}),
    unsupported=frozenset({"batch_size"}),
    noop={"streaming": (False,)},
)

#: keys every job type has (CommonJobConfig)
_JOB_COMMON = Section(
    supported=frozenset({"id", "name", "type", "depends_on"}),
    unsupported=frozenset({"interrupt", "hook", "retry", "on_error"}),
    noop={"max_run_count": (25,)},
)

# a component job's `retry` and `on_error` are lowered (request retries, a fallback node),
# its `interrupt` (pause nodes before and after it: model_compose_interrupt.py) and its `hook`
# (a hook node around the call: model_compose_hooks)
JOB = Section(_JOB_COMMON.supported | {"component", "action", "input", "output", "retry", "on_error", "interrupt", "hook"},
              _JOB_COMMON.unsupported - {"retry", "on_error", "interrupt", "hook"}, {**_JOB_COMMON.noop, "repeat_count": (1,)})
#: JobInterruptsConfig, and one of its points (JobInterruptConfig); `timeout` is flowctl's:
#: how long the pause waits for its answer
INTERRUPTS = Section(supported=frozenset({"before", "after"}))
INTERRUPT_POINT = Section(supported=frozenset({"message", "metadata", "timeout"}), unsupported=frozenset({"condition"}))
#: JobHooksConfig; each hook is JobHookConfig (`script`), plus flowctl's `timeout` (seconds)
HOOKS = Section(supported=frozenset({"before", "after"}))
HOOK = Section(supported=frozenset({"script", "timeout"}))
RETRY = Section(supported=frozenset({"max_attempt_count", "delay", "backoff", "max_delay"}))
ON_ERROR = Section(supported=frozenset({"output"}), unsupported=frozenset({"to"}))

#: `if` (IfJobConfig): one condition may be written inline, without `conditions:`
IF_JOB = _JOB_COMMON.with_keys(supported={"input", "conditions", "otherwise", "operator", "value", "if_true", "if_false"})
IF_CONDITION = Section(supported=frozenset({"operator", "value", "if_true", "if_false"}))

SWITCH_JOB = _JOB_COMMON.with_keys(supported={"input", "cases", "otherwise", "value", "then"})
SWITCH_CASE = Section(supported=frozenset({"value", "then"}))

RANDOM_ROUTER_JOB = _JOB_COMMON.with_keys(supported={"mode", "routings", "session", "salt"})
RANDOM_ROUTE = Section(supported=frozenset({"to", "weight"}))

FILTER_JOB = Section(_JOB_COMMON.supported | {"input", "where", "output"}, _JOB_COMMON.unsupported, {**_JOB_COMMON.noop, "streaming": (False,)})
FILTER_WHERE = Section(supported=frozenset({"input", "operator", "value", "all", "any", "not"}))

FOR_EACH_JOB = Section(_JOB_COMMON.supported | {"input", "do", "batch_size", "output"}, _JOB_COMMON.unsupported, {**_JOB_COMMON.noop, "streaming": (False,)})

LOOP_JOB = _JOB_COMMON.with_keys(supported={"input", "do", "while", "until", "max_iteration_count", "output"})

DELAY_JOB = _JOB_COMMON.with_keys(supported={"mode", "duration", "output"}, unsupported={"time", "timezone"})

#: job types flowctl lowers, by `type:`; the rest are reported with `JOB_TYPE_HINTS`
JOB_TYPES = {"component": JOB, "if": IF_JOB, "switch": SWITCH_JOB, "random-router": RANDOM_ROUTER_JOB,
             "filter": FILTER_JOB, "for-each": FOR_EACH_JOB, "delay": DELAY_JOB, "loop": LOOP_JOB}  # fmt: skip
JOB_TYPE_HINTS = {
    "pipeline": "write the steps as jobs chained with `depends_on`",
    "accumulate": "collect with a `for-each` job, or loop in a command",
    "fan-out": "write one job per branch: jobs without a dependency between them run at the same time",
}

#: model-compose's condition operators (ConditionOperator) in flowctl's `when:`/switch vocabulary
CONDITION_OPERATORS = {"eq": "equals", "neq": "not_equals", "gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte",
                       "in": "in", "not-in": "not_in", "starts-with": "starts_with", "ends-with": "ends_with",
                       "match": "matches"}  # fmt: skip

WORKFLOW = Section(
    supported=frozenset({"id", "name", "title", "description", "job", "jobs", "output", "default"}),
    noop={"private": (False,)},
)

#: a workflow without `job`/`jobs` is itself its one job (model-compose lifts these keys)
WORKFLOW_WITH_IMPLIED_JOB = Section(
    WORKFLOW.supported | (JOB.supported - {"id", "name"}),
    JOB.unsupported,
    {**WORKFLOW.noop, **JOB.noop},
)

COMPONENT_TYPES = {"http-server": HTTP_SERVER_COMPONENT, "http-client": HTTP_CLIENT_COMPONENT, "shell": SHELL_COMPONENT}
COMPONENT_ACTIONS = {"http-server": HTTP_SERVER_ACTION, "http-client": HTTP_CLIENT_ACTION, "shell": SHELL_ACTION}

_BEHIND_HTTP = "run it behind an HTTP API and call that with an `http-server` (managed) or `http-client` component"
_AS_COMMAND = "run the tool as a command in a `shell` component (ffmpeg, a script...), or behind an HTTP API with an `http-server` component"

#: what to use instead of each model-compose component type flowctl does not run
COMPONENT_ALTERNATIVES: dict[str, str] = {
    "model": "serve the model with an OpenAI-compatible server (vLLM, llama.cpp's llama-server) started by an `http-server` "
             "component's `manage.start`, and call it from the component's action",
    "model-trainer": "run the training script as a `shell` component command",
    "model-memory": _BEHIND_HTTP,
    "model-tokenizer": _BEHIND_HTTP,
    "vector-store": "run the store's own HTTP API (Chroma, Milvus, Qdrant) as an `http-server` component, or call a hosted one with `http-client`",
    "graph-store": "call the database's HTTP API with an `http-client` component (or start it with an `http-server` component)",
    "key-value-store": "call the store's HTTP API with an `http-client` component (or start it with an `http-server` component)",
    "search-engine": _BEHIND_HTTP,
    "file-store": _AS_COMMAND,
    "data-queue": "flowctl runs each workflow run on its own; pass values between jobs with `${jobs.<id>.output}`",
    "datasets": _AS_COMMAND,
    "workflow": "write the other workflow's jobs into this one (flowctl does not call workflows from workflows)",
    "agent": "an agent picks its tools at run time; flowctl runs a fixed graph: write the steps as jobs",
    "mcp-server": "flowctl calls upstreams over HTTP: use an `http-server` or `http-client` component",
    "mcp-client": "flowctl calls upstreams over HTTP: use an `http-client` component",
    "websocket-server": "flowctl calls upstreams over HTTP/SSE: put the model behind an HTTP endpoint (`http-server` component)",
    "websocket-client": "flowctl calls upstreams over HTTP/SSE: use an `http-client` component",
    "web-scraper": "fetch the page with an `http-client` component, or run a scraper script as a `shell` component",
    "web-browser": "drive the browser from a script run by a `shell` component",
}


def component_alternative(type_name: str) -> str:
    """What to use instead of a component type flowctl does not run."""
    return COMPONENT_ALTERNATIVES.get(type_name, _AS_COMMAND)


#: component runtimes that mean "run here, as a local process": what flowctl does anyway
LOCAL_RUNTIMES = ("native", "process", "embedded")


def unsupported(key: str, path: PathKey, locate: Locate, why: str | None = None) -> FlowError:
    return FlowError(
        f"model-compose key '{key}' is not supported by flowctl" + ("" if key in UNSUPPORTED_HINTS else " yet"),
        location=locate(path, key=True),
        hint=why or "remove it, or write this part in flowctl's native form",
    )


#: what to use instead of a model-compose key flowctl does not lower, where there is something
UNSUPPORTED_HINTS = {
    "hook": "flowctl runs hooks around component jobs (and a loop's or for-each's `do:` job) only: put the hook on the "
            "component job this job routes to or reads",
    "interrupt": "flowctl pauses component jobs only: put the review on the component job this one leads to or follows",
    "condition": "flowctl pauses every time: put the check in an `if` job that routes to the job with the interrupt",
}


def check_keys(data: Mapping[str, Any], path: PathKey, section: Section, where: str, errors: list[FlowError], locate: Locate) -> None:
    """Append an error for each key of `data` that is unknown, unsupported, or a no-op key
    given something other than its model-compose default."""
    for key, value in data.items():
        if key in section.supported or key in section.ignored:
            continue
        child = (*path, key)
        if key in section.noop:
            allowed = section.noop[key]
            if value not in allowed:
                shown = allowed[0] if not isinstance(allowed[0], bool) else str(allowed[0]).lower()
                errors.append(unsupported(key, child, locate, f"flowctl supports only `{key}: {shown}`" + ("" if key in section.noop_not_default else " (the model-compose default)")))
            continue
        if key in section.unsupported:
            errors.append(unsupported(key, child, locate, UNSUPPORTED_HINTS.get(key)))
            continue
        match = difflib.get_close_matches(key, section.known, n=1, cutoff=0.6)
        hint = f"did you mean '{match[0]}'?" if match else "known keys: " + ", ".join(section.known)
        errors.append(FlowError(f"unknown key '{key}' {where}".rstrip(), location=locate(child, key=True), hint=hint))


def parse_duration(value: Any) -> float | None:
    """model-compose durations: a number of seconds, or `"500ms"`, `"30s"`, `"5m"`, `"1h"`.

    >>> parse_duration("1m"), parse_duration(2.5), parse_duration("500ms"), parse_duration("soon")
    (60.0, 2.5, 0.5, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            number = text[: -len(suffix)].strip()
            try:
                return float(number) * scale
            except ValueError:
                return None
    try:
        return float(text)
    except ValueError:
        return None


def node_id(raw: str, fallback: str) -> str:
    """A readable node id from a model-compose id: `__component__` → `component`, `my vllm` →
    `my-vllm`; ids must start with a letter to be usable in `${nodes.<id>...}`.

    >>> node_id("__component__", "x"), node_id("Qwen 2", "x"), node_id("7b", "x"), node_id("__", "x")
    ('component', 'Qwen-2', 'n7b', 'x')
    """
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "-" for ch in raw).strip("_-")
    if not cleaned:
        return fallback
    return cleaned if cleaned[0].isalpha() else "n" + cleaned
