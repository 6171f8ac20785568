"""The model-compose front end: lower a model-compose file to flowctl's native form.

    model-compose                                  native
    controller (http-server)                       server (host, port, base_path; webui.port → ui_port)
    controller (mcp-server)                        server.mcp_path (model_compose_mcp)
    component http-server manage.install/build    <component>-install   env-setup (venv: false)
    component http-server manage.start             <component>           process-start (TCP probe on port)
    job → http-server / http-client action         <job>                 http-stream
    job → shell action                             <job>                 command
    if / switch / random-router job                <job>                 switch
    filter / for-each job                          <job>                 map
    delay job                                      <job>                 value (delay)
    a streamed workflow output                     <job>-output          sse-sink
    listener (http-callback, http-trigger)         <listener>            http-callback / http-trigger (`model_compose_listener`)
    workflow                                       workflows.<id> (single, id-less: `__default__`)
    gateway (http-tunnel, ssh-tunnel)              <gateway>-<port>      tunnel (`model_compose_gateway`)

This module reads the file's top level, its controller and its components;
`model_compose_jobs` lowers each workflow's jobs (with `model_compose_calls` for component
jobs, `model_compose_routing` for the rest) and `model_compose_keys` says which keys exist.

`manage` scripts follow model-compose: a list of strings is one argv (`[bash, -c, script]`),
a list of lists is several commands; `start` is one argv. A plain string (a flowctl
extension) is run by `bash -c`. The scripts are not templates in model-compose, so any `${`
in them reaches the shell untouched (but `${env.NAME}`). Each native path remembers the path
it came from (`LoweredDocument.origin`), so later errors point into the user's file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import FlowError, FlowErrors
from ..loader import LoadedDocument, PathKey
from . import model_compose_keys as keys
from . import model_compose_mcp as mcp
from .located import LoweredDocument
from .model_compose_containers import lower_shell_container
from .model_compose_gateway import lower_gateways
from .model_compose_jobs import DEFAULT_WORKFLOW_ID, lower_workflows
from .model_compose_listener import ListenerLowering
from .model_compose_runtime import lower_docker_server, lower_virtualenv, runtime_of

#: top-level keys that mark a file as model-compose (the native form has `nodes:`)
MODEL_COMPOSE_KEYS = frozenset({"controller", "component", "components", "workflow"})

#: seconds a lowered process-start may take to listen: a first start often downloads a model
READINESS_TIMEOUT = 1800.0


def lower_model_compose(doc: LoadedDocument) -> LoweredDocument:
    return _Lowering(doc).lower()


class _Lowering:
    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.errors: list[FlowError] = []
        self.origin: dict[PathKey, PathKey] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.components: dict[str, dict[str, Any]] = {}  # model-compose id -> what jobs need
        #: what `${gateway.port_<P>...}` (a rewritten `${gateway:P...}`) stands for (`model_compose_gateway`)
        self.gateway_sources: dict[tuple[Any, ...], Any] = {}
        self.listeners = ListenerLowering(self)

    # -- helpers -----------------------------------------------------------------------------

    def error(self, message: str, path: PathKey, *, hint: str | None = None, key: bool = False) -> None:
        self.errors.append(FlowError(message, location=self.doc.locate(path, key=key), hint=hint))

    def mapping(self, value: Any, path: PathKey, what: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(f"{what} must be a mapping of keys", path)
        return None

    def entries(self, data: dict[str, Any], one: str, many: str, base: PathKey = ()) -> list[tuple[str | None, PathKey, dict[str, Any]]]:
        """`component:` (one), or `components:` as a list (ids inside) or a mapping by id."""
        if many in data:
            if one in data:
                self.error(f"write either `{one}:` or `{many}:`, not both", (*base, one), key=True)
            value, where = data[many], (*base, many)
            if isinstance(value, dict):
                items: list[tuple[str | None, PathKey, Any]] = [(str(k), (*where, k), v) for k, v in value.items()]
            elif isinstance(value, list):
                items = [(None, (*where, i), v) for i, v in enumerate(value)]
            else:
                self.error(f"`{many}:` must be a list or a mapping by id", where)
                return []
        elif one in data:
            items = [(None, (*base, one), data[one])]
        else:
            return []
        result = []
        for given_id, path, value in items:
            if (entry := self.mapping(value, path, one)) is not None:
                raw_id = entry.get("id", given_id)
                result.append((None if raw_id is None else str(raw_id), path, entry))
        return result

    def unique(self, wanted: str) -> str:
        candidate, n = wanted, 2
        while candidate in self.nodes:
            candidate, n = f"{wanted}-{n}", n + 1
        return candidate

    def add_node(self, node_id: str, node: dict[str, Any], origin: PathKey, fields: dict[Any, PathKey] | None = None) -> None:
        """Add a native node; `fields` maps a field name (or a path inside the node) to the
        file path it came from, where that differs from `origin` + the same path."""
        self.nodes[node_id] = node
        self.origin[("nodes", node_id)] = origin
        for name, path in (fields or {}).items():
            self.origin[("nodes", node_id, *((name,) if isinstance(name, str) else name))] = path

    # -- the whole file ----------------------------------------------------------------------

    def lower(self) -> LoweredDocument:
        data = self.doc.data
        keys.check_keys(data, (), keys.TOP, "at the top of a model-compose file", self.errors, self.doc.locate)
        data = lower_gateways(self, data)  # first: `${gateway:PORT...}` is rewritten for all that follows
        native: dict[str, Any] = {"version": 1}
        if "controller" in data and (controller := self.mapping(data["controller"], ("controller",), "controller")) is not None:
            self.controller(controller, native)
        else:
            native["server"] = {"base_path": "/", "ui_port": None}  # model-compose: routes at the root, no web UI
        self.listeners.lower(data)
        for component_id, path, component in self.entries(data, "component", "components"):
            self.component(component_id, path, component)
        native["nodes"] = self.nodes
        native["workflows"] = self.workflows(data)
        self.listeners.check_triggers(native["workflows"])
        if self.errors:
            raise FlowErrors(self.errors)
        return LoweredDocument(data=native, source=self.doc, origin=self.origin, form="model-compose")

    def controller(self, controller: dict[str, Any], native: dict[str, Any]) -> None:
        path = ("controller",)
        keys.check_keys(controller, path, keys.CONTROLLER, "in controller", self.errors, self.doc.locate)
        if controller.get("type", "http-server") not in ("http-server", mcp.MCP_SERVER):
            kind = str(controller["type"])
            self.error(f"controller type '{kind}' is not served by flowctl", (*path, "type"), hint=keys.CONTROLLER_HINTS.get(kind, "use `type: http-server`"))
        adapter = self.http_adapter(controller, path)
        listener, listener_path = adapter or (controller, path)
        server: dict[str, Any] = {"base_path": listener.get("base_path") or "/", "ui_port": None}
        self.origin[("server",)] = listener_path
        if mcp.serves_mcp(controller, adapter[0] if adapter else None):
            server.update(mcp.lower_mcp_listener(listener))
            self.origin[("server", "mcp_path")] = (*listener_path, "base_path") if "base_path" in listener else listener_path
        for key in ("host", "port"):
            if key in listener:
                server[key] = listener[key]
        if controller.get("max_concurrent_count"):  # 0: unbounded in model-compose; keep flowctl's bound
            server["max_concurrency"] = controller["max_concurrent_count"]
            self.origin[("server", "max_concurrency")] = (*path, "max_concurrent_count")
        if "shutdown_timeout" in controller:
            seconds = keys.parse_duration(controller["shutdown_timeout"])
            if seconds is None:
                self.error("`shutdown_timeout` must be a duration such as 30s, 5m or a number of seconds", (*path, "shutdown_timeout"))
            server["drain_timeout"] = seconds or 0.0
            self.origin[("server", "drain_timeout")] = (*path, "shutdown_timeout")
        if "webui" in controller and (webui := self.mapping(controller["webui"], (*path, "webui"), "webui")) is not None:
            keys.check_keys(webui, (*path, "webui"), keys.WEBUI, "in controller.webui", self.errors, self.doc.locate)
            driver = webui.get("driver", "gradio")
            if driver not in keys.WEBUI_DRIVERS:
                self.error(f"web UI driver '{driver}' is not supported by flowctl yet", (*path, "webui", "driver"),
                           hint="flowctl serves its own web UI; use `driver: gradio` or leave it out")
            server["ui_port"] = webui.get("port", 8081)
            self.origin[("server", "ui_port")] = (*path, "webui", "port") if "port" in webui else (*path, "webui")
        native["server"] = server
        if "name" in controller:
            native["name"] = controller["name"]
            self.origin[("name",)] = (*path, "name")

    def http_adapter(self, controller: dict[str, Any], path: PathKey) -> tuple[dict[str, Any], PathKey] | None:
        """model-compose 0.4.100+'s `controller.adapter` (or `adapters: [one]`): where the HTTP
        server's host, port and base_path live in that form; None in the older form."""
        if "adapter" in controller and "adapters" in controller:
            self.error("write either `adapter:` or `adapters:`, not both", (*path, "adapter"), key=True)
            return None
        if "adapter" in controller:
            where: PathKey = (*path, "adapter")
            adapter = self.mapping(controller["adapter"], where, "controller.adapter")
        elif "adapters" in controller:
            adapters = controller["adapters"]
            if not isinstance(adapters, list) or len(adapters) != 1:
                self.error("flowctl serves one HTTP adapter: `adapters:` must list exactly one", (*path, "adapters"),
                           hint="keep the `type: http-server` adapter and drop the others")
                return None
            where = (*path, "adapters", 0)
            adapter = self.mapping(adapters[0], where, "controller.adapters[0]")
        else:
            return None
        if adapter is None:
            return None
        kind = adapter.get("type")
        section = mcp.MCP_ADAPTER if kind == mcp.MCP_SERVER else keys.HTTP_ADAPTER
        keys.check_keys(adapter, where, section, "in controller.adapter", self.errors, self.doc.locate)
        if kind not in keys.HTTP_ADAPTER_TYPES:
            self.error(f"controller adapter type {kind!r} is not served by flowctl", (*where, "type") if "type" in adapter else where,
                       hint=keys.CONTROLLER_HINTS.get(str(kind), "use `type: http-server`"))
        for key in ("host", "port", "base_path"):
            if key in controller:
                self.error(f"`{key}` is given both on the controller and in its adapter", (*path, key), key=True,
                           hint=f"keep the adapter's `{key}`")
        return adapter, where

    # -- components --------------------------------------------------------------------------

    def component(self, component_id: str | None, path: PathKey, component: dict[str, Any]) -> None:
        mc_id = component_id or "__component__"
        where = f"in component '{mc_id}'" if component_id else "in component"
        if mc_id in self.components:
            self.error(f"component id '{mc_id}' is used twice", (*path, "id") if "id" in component else path, key=True)
            return
        base = keys.node_id(mc_id, "component")
        label = f"component '{mc_id}'" if component_id else "the component"
        info: dict[str, Any] = {"path": path, "data": component, "base": base, "label": label, "needs": [], "actions": {}}
        self.components[mc_id] = info
        type_name = component.get("type")
        section = keys.COMPONENT_TYPES.get(type_name) if isinstance(type_name, str) else None
        info["type"] = type_name if section is not None else None  # None: reported here, skipped by jobs
        if section is None:
            if type_name is None:
                self.error(f"missing required key 'type' {where}", path, key=True, hint="flowctl runs: " + ", ".join(keys.COMPONENT_TYPES))
            else:
                self.error(f"component type '{type_name}' is not supported by flowctl", (*path, "type"), hint=keys.component_alternative(str(type_name)))
            return
        action_section = keys.COMPONENT_ACTIONS[str(type_name)]
        inline = self.inline_action_keys(component, section, action_section)
        keys.check_keys(component, path, section.with_keys(supported=inline), f"{where} ({type_name})", self.errors, self.doc.locate)
        runtime = runtime_of(self, component, path)  # see model_compose_runtime
        if type_name == "http-server" and runtime is not None and runtime[0] == "docker":
            lower_docker_server(self, info, runtime[1], runtime[2])
        elif type_name == "http-server":
            self.managed_server(info)
        elif type_name == "shell":
            self.shell_setup(info)
        else:
            info["base_url"] = component.get("base_url")  # a client's requests run in flowctl: no venv to enter
        if runtime is not None and runtime[0] == "virtualenv" and type_name in ("http-server", "shell"):
            lower_virtualenv(self, info, runtime[1], runtime[2])
        elif runtime is not None and type_name == "shell":  # docker, apple-container
            lower_shell_container(self, info, *runtime)
        if inline:
            action = {key: component[key] for key in component if key in inline}
            keys.check_keys(action, path, action_section, f"in action of {where[3:]}", self.errors, self.doc.locate)
            info["actions"] = {"__action__": (path, action)}
        else:
            info["actions"] = self.actions(component, path, action_section, where)

    @staticmethod
    def inline_action_keys(component: dict[str, Any], section: keys.Section, action_section: keys.Section) -> frozenset[str]:
        """The keys of a component's one action written on the component itself (model-compose's
        earlier single-action form: `endpoint`, `body`, `output` beside `type`), when it has no
        `action:`/`actions:`; keys both may hold (`headers`, `env`) stay the component's."""
        if "action" in component or "actions" in component:
            return frozenset()
        action_keys = action_section.supported | action_section.unsupported | set(action_section.noop)
        return frozenset(key for key in component if key in action_keys and key not in section.known and key not in ("id", "default"))

    def shell_setup(self, info: dict[str, Any]) -> None:
        """A shell component's `manage.install` becomes an env-setup node its jobs wait for;
        `base_dir` and `env` apply to every action."""
        component, path = info["data"], info["path"]
        manage, manage_path = self.manage_section(component, path)
        if "install" in manage:
            commands = self.script_list(manage["install"], (*manage_path, "install"))
            if commands:
                install_id = self.unique(f"{info['base']}-install")
                node: dict[str, Any] = {"type": "env-setup", "description": f"model-compose install scripts of {info['label']}", "venv": False,
                                        "commands": [command for command, _ in commands]}
                self.add_node(install_id, node, (*manage_path, "install"), {"commands": (*manage_path, "install")})
                for index, (_, origin) in enumerate(commands):
                    self.origin[("nodes", install_id, "commands", index)] = origin
                info["needs"] = [install_id]
                info["services"] = [install_id]
        base_dir = component.get("base_dir")
        if base_dir is not None and not isinstance(base_dir, str):
            self.error("`base_dir` must be a path", (*path, "base_dir"))
            base_dir = None
        info["base_dir"] = self.resolve_dir(base_dir) if base_dir else None
        env = component.get("env") or {}
        if not isinstance(env, dict):
            self.error("`env` must be a mapping of NAME: value", (*path, "env"))
            env = {}
        info["env"] = env

    def resolve_dir(self, directory: str) -> str:
        """A directory named in the flow, relative to the flow file's folder (model-compose
        runs from there)."""
        if self.doc.file == "<string>":
            return directory
        return str(Path(self.doc.file).resolve().parent / directory)

    def managed_server(self, info: dict[str, Any]) -> None:
        component, path = info["data"], info["path"]
        port = component.get("port", 8000)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            self.error("`port` must be a number from 1 to 65535", (*path, "port"))
            port = 8000
        host = component.get("host", "127.0.0.1")
        info["base_url"] = f"http://{host}:{port}{component.get('base_path') or ''}"
        manage, manage_path = self.manage_section(component, path)
        scripts, scripts_path = manage, manage_path
        if "scripts" in manage and (inner := self.mapping(manage["scripts"], (*manage_path, "scripts"), "scripts")) is not None:
            keys.check_keys(inner, (*manage_path, "scripts"), keys.SCRIPTS, "in manage.scripts", self.errors, self.doc.locate)
            scripts, scripts_path = inner, (*manage_path, "scripts")
        env = manage.get("env") or {}
        env_path = (*manage_path, "env")
        if not isinstance(env, dict):
            self.error("`env` must be a mapping of NAME: value", env_path)
            env = {}
        cwd = manage.get("working_dir")
        if cwd is not None:
            cwd = self.resolve_dir(str(cwd))
        commands: list[Any] = []
        command_origins: list[PathKey] = []
        for script in ("install", "build"):
            if script in scripts:
                for command, origin in self.script_list(scripts[script], (*scripts_path, script)):
                    commands.append(self.in_dir(command, cwd))
                    command_origins.append(origin)
        install_id = None
        if commands:
            install_id = self.unique(f"{info['base']}-install")
            origin = (*scripts_path, "install") if "install" in scripts else (*scripts_path, "build")
            node: dict[str, Any] = {"type": "env-setup", "description": f"model-compose install scripts of {info['label']}", "venv": False, "commands": commands}
            fields = {"commands": origin}
            if env:
                node["env"] = literal(env)
                fields["env"] = env_path
            self.add_node(install_id, node, origin, fields)
            for index, command_origin in enumerate(command_origins):
                self.origin[("nodes", install_id, "commands", index)] = command_origin
            info["needs"] = [install_id]
            info["services"] = [install_id]
        if "start" not in scripts:
            return
        start_path = (*scripts_path, "start")
        start = scripts["start"]
        if not (isinstance(start, str) or (isinstance(start, list) and start and all(isinstance(a, str) for a in start))):
            self.error("`start` must be one command: a list of arguments, or a string run by bash", start_path)
            return
        start_id = self.unique(info["base"])
        node = {
            "type": "process-start",
            "description": f"the managed server of {info['label']}",
            "needs": [install_id] if install_id else [],
            "command": literal(start),
            "host": host,
            "port": port,
            "readiness": {"tcp": True, "timeout": READINESS_TIMEOUT},
            "restart": {"policy": "on-failure"},
        }
        fields = {"command": start_path, "needs": start_path, "port": (*path, "port") if "port" in component else start_path,
                  "host": (*path, "host") if "host" in component else start_path}
        if env:
            node["env"] = literal(env)
            fields["env"] = env_path
        if cwd is not None:
            node["cwd"] = literal(cwd)
            fields["cwd"] = (*manage_path, "working_dir")
        self.add_node(start_id, node, start_path, fields)
        info["needs"] = [start_id]
        info["services"] = [*info.get("services", []), start_id]

    def manage_section(self, component: dict[str, Any], path: PathKey) -> tuple[dict[str, Any], PathKey]:
        if "manage" in component:
            inline = [k for k in keys.MANAGE_SCRIPTS if k in component and k in keys.HTTP_SERVER_COMPONENT.supported]
            if inline:
                self.error(f"`{inline[0]}:` belongs inside `manage:` when the component has one", (*path, inline[0]), key=True)
            manage = self.mapping(component["manage"], (*path, "manage"), "manage") or {}
            keys.check_keys(manage, (*path, "manage"), keys.MANAGE, "in manage", self.errors, self.doc.locate)
            return manage, (*path, "manage")
        return component, path  # model-compose lifts `install:`/`start:` written on the component

    def script_list(self, value: Any, path: PathKey) -> list[tuple[Any, PathKey]]:
        """model-compose: a list of strings is one argv; a list of lists is several argvs."""
        if isinstance(value, str):
            return [(literal(value), path)]
        if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            return [(literal(value), path)]
        if isinstance(value, list) and all(isinstance(item, list) and item and all(isinstance(a, str) for a in item) for item in value):
            return [(literal(item), (*path, index)) for index, item in enumerate(value)]
        self.error("a script must be a list of arguments, a list of such lists, or a string run by bash", path)
        return []

    @staticmethod
    def in_dir(command: Any, cwd: str | None) -> Any:
        """Run an install command in `working_dir` (env-setup has no cwd of its own)."""
        if cwd is None:
            return command
        if isinstance(command, str):
            return ["bash", "-c", 'cd -- "$0" && exec bash -c "$1"', literal(cwd), command]
        return ["bash", "-c", 'cd -- "$0" && exec "$@"', literal(cwd), *command]

    def actions(self, component: dict[str, Any], path: PathKey, section: keys.Section, where: str) -> dict[str, tuple[PathKey, dict[str, Any]]]:
        found: dict[str, tuple[PathKey, dict[str, Any]]] = {}
        for action_id, action_path, action in self.entries(component, "action", "actions", path):
            keys.check_keys(action, action_path, section, f"in action of {where[3:]}", self.errors, self.doc.locate)
            mc_id = action_id or "__action__"
            if mc_id in found:
                self.error(f"action id '{mc_id}' is used twice", action_path, key=True)
                continue
            found[mc_id] = (action_path, action)
        return found

    # -- workflows ---------------------------------------------------------------------------

    def workflows(self, data: dict[str, Any]) -> dict[str, Any]:
        return lower_workflows(self, data)


def literal(value: Any) -> Any:
    """`value` with every `${` written `$${`, so flowctl's templating leaves it as it is,
    except `${env.NAME}`: model-compose fills those in everywhere when it loads a file, and
    flowctl's service nodes read `env` too. A shell `${HOME}` in an install script must reach
    bash untouched.

    >>> literal(["bash", "-c", "echo ${HOME} ${env.TOKEN}"])
    ['bash', '-c', 'echo $${HOME} ${env.TOKEN}']
    """
    if isinstance(value, str):
        return _NOT_ENV.sub("$${", value)
    if isinstance(value, list):
        return [literal(item) for item in value]
    if isinstance(value, dict):
        return {key: literal(item) for key, item in value.items()}
    return value


_NOT_ENV = re.compile(r"\$\{(?!\s*env\.)")


__all__ = ["DEFAULT_WORKFLOW_ID", "MODEL_COMPOSE_KEYS", "lower_model_compose"]
