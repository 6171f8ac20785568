"""model-compose's top-level `listener:` (or `listeners:`), lowered to listener service nodes.

    model-compose                                   native
    listener: {type: http-callback, ...}            <id>  http-callback (service: its own port)
    listener: {type: http-trigger, triggers: ...}   <id>  http-trigger  (service: its own port)
    an action's `completion: {type: callback}`      the request's `completion:` on that listener

A listener's templates read the incoming request: `${body...}`, `${query...}`,
`${headers...}` become `${request.body...}` and so on. The single-route form (`path`,
`identify_by`, ... on the listener itself) is a one-item `callbacks:` / `triggers:`, as
model-compose inflates it. `host` defaults to 127.0.0.1 (model-compose: 0.0.0.0); a host
written in the file is kept, and `flowctl up` then asks for --insecure, as it does for the
controller's. A trigger's `workflow` must name a workflow of the file.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from ..errors import TemplateError
from ..loader import PathKey
from ..templating.rewrite import Unbindable, bind
from . import model_compose_keys as keys

if TYPE_CHECKING:
    from .model_compose import _Lowering

#: what a listener's templates read, and where that is in the native form
_REQUEST_SOURCES = ("body", "query", "headers")
_REQUEST_BINDINGS: dict[tuple[str | int, ...], Any] = {(name,): f"${{request.{name}}}" for name in _REQUEST_SOURCES}
#: model-compose's default ports (HttpCallbackListenerConfig, HttpTriggerListenerConfig)
_DEFAULT_PORTS = {"http-callback": 8090, "http-trigger": 8091}


class ListenerLowering:
    """The file's listeners: `lower()` adds their nodes; `callback_listener` is the one
    http-callback node the actions' `completion:` waits on; `check_triggers` runs once the
    workflows are known."""

    def __init__(self, lw: _Lowering) -> None:
        self.lw = lw
        self.callback_listener: str | None = None
        #: (workflow id, where it is written) of every trigger
        self._triggered: list[tuple[str, PathKey]] = []

    def lower(self, data: dict[str, Any]) -> None:
        for listener_id, path, listener in self.lw.entries(data, "listener", "listeners"):
            kind = listener.get("type")
            if kind not in keys.LISTENER_TYPES:
                where = (*path, "type") if "type" in listener else path
                self.lw.error(f"listener type {kind!r} is not supported by flowctl" if kind is not None else "missing required key 'type' in listener",
                              where, key=kind is None, hint="flowctl runs listeners of type: " + ", ".join(keys.LISTENER_TYPES))
                continue
            keys.check_keys(listener, path, keys.LISTENER_TYPES[kind], f"in listener ({kind})", self.lw.errors, self.lw.doc.locate)
            node_id = self.lw.unique(keys.node_id(listener_id or "listener", "listener"))
            node: dict[str, Any] = {"type": kind, "description": f"model-compose listener ({kind})", "host": listener.get("host", "127.0.0.1"),
                                    "port": listener.get("port", _DEFAULT_PORTS[kind])}
            if listener.get("base_path"):
                node["base_path"] = listener["base_path"]
            fields: dict[Any, PathKey] = {name: (*path, name) for name in ("host", "port", "base_path") if name in listener}
            if kind == "http-callback":
                node["callbacks"] = self._routes(listener, path, "callbacks", keys.CALLBACK_ROUTE, self._callback, fields)
                if self.callback_listener is not None:
                    self.lw.error("flowctl waits for callbacks on one http-callback listener per flow", path, key=True,
                                  hint="give this listener's routes to the first one (`callbacks:` takes a list)")
                    continue
                self.callback_listener = node_id
            else:
                node["triggers"] = self._routes(listener, path, "triggers", keys.TRIGGER_ROUTE, self._trigger, fields)
            self.lw.add_node(node_id, node, path, fields)

    def _routes(self, listener: dict[str, Any], path: PathKey, many: str, section: keys.Section, lower_one: Any, fields: dict[Any, PathKey]) -> list[dict[str, Any]]:
        """The listener's routes: its `callbacks:`/`triggers:` list, or the one route written
        on the listener itself (model-compose's single form)."""
        if many in listener:
            routes = listener[many]
            if not isinstance(routes, list):
                self.lw.error(f"`{many}:` must be a list", (*path, many))
                return []
            where = [(*path, many, index) for index in range(len(routes))]
        else:
            single = {key: value for key, value in listener.items() if key in section.known}
            routes, where = ([single], [path]) if single else ([], [])
        lowered = []
        for index, (route, route_path) in enumerate(zip(routes, where, strict=True)):
            if (route := self.lw.mapping(route, route_path, f"a {many[:-1]}")) is None:
                continue
            if many in listener:
                keys.check_keys(route, route_path, section, f"in {many}[{index}]", self.lw.errors, self.lw.doc.locate)
            lowered.append(lower_one(route, route_path))
            fields[(many, index)] = route_path
            for key in route:
                fields[(many, index, key)] = (*route_path, key)
        return lowered

    def _callback(self, route: dict[str, Any], path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {"path": route.get("path", "/"), "method": str(route.get("method", "POST")).upper()}
        for key in ("identify_by", "result", "status"):
            if key in route:
                out[key] = self._request_template(route[key], (*path, key))
        for key in ("success_when", "fail_when"):
            if key in route:
                value = route[key]
                out[key] = value if isinstance(value, list) else [value]
        return out

    def _trigger(self, route: dict[str, Any], path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {"path": route.get("path", "/"), "method": str(route.get("method", "POST")).upper()}
        workflow = route.get("workflow")
        if workflow is None:
            self.lw.error("missing required key 'workflow' in trigger", path, key=True, hint="name the workflow a request starts")
        else:
            out["workflow"] = str(workflow)
            self._triggered.append((str(workflow), (*path, "workflow")))
        if "input" in route:
            out["input"] = self._request_template(route["input"], (*path, "input"))
        return out

    def _request_template(self, value: Any, path: PathKey) -> Any:
        try:
            return bind(value, _REQUEST_BINDINGS, _REQUEST_SOURCES)
        except (TemplateError, Unbindable) as exc:
            self.lw.error(f"{exc}", path, hint="a listener reads the request: ${body...}, ${query...}, ${headers...}")
            return None

    def check_triggers(self, workflows: dict[str, Any]) -> None:
        """Each trigger names a workflow of the file."""
        for workflow, path in self._triggered:
            if workflow not in workflows and workflows:
                match = difflib.get_close_matches(workflow, list(workflows), n=1, cutoff=0.5)
                self.lw.error(f"trigger starts workflow '{workflow}', which the file does not have", path,
                              hint=f"did you mean '{match[0]}'?" if match else "workflows: " + ", ".join(workflows))

    def completion(self, completion: Any, path: PathKey, wait_for: Any) -> dict[str, Any] | None:
        """An action's `completion:` as the request's native `completion:` (None after an
        error); `wait_for` is its `wait_for` already bound to native templates."""
        if not isinstance(completion, dict):
            self.lw.error("`completion` must be a mapping", path)
            return None
        kind = completion.get("type")
        if kind != "callback":
            self.lw.error(f"completion type {kind!r} is not supported by flowctl", (*path, "type") if "type" in completion else path, key=kind is None,
                          hint="flowctl waits for callbacks (`type: callback`); to poll, call the status endpoint in a `loop` job")
            return None
        keys.check_keys(completion, path, keys.CALLBACK_COMPLETION, "in completion", self.lw.errors, self.lw.doc.locate)
        if self.callback_listener is None:
            self.lw.error("a `completion: {type: callback}` needs a top-level `listener:` of type http-callback", path, key=True,
                          hint="add `listener: {type: http-callback, port: 8090, path: /callback, identify_by: ${body.task_id}}`")
            return None
        out: dict[str, Any] = {"type": "callback", "listener": self.callback_listener}
        if wait_for is not None:
            out["wait_for"] = wait_for
        if "timeout" in completion:
            seconds = keys.parse_duration(completion["timeout"])
            if seconds is None or seconds <= 0:
                self.lw.error("`timeout` must be a duration such as 30s, 5m or a number of seconds", (*path, "timeout"))
                return None
            out["timeout"] = seconds
        return out
