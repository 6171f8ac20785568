"""model-compose's `gateway:` lowered to tunnel nodes, and `${gateway:PORT.field}` to their outputs.

    model-compose                                         native
    gateway http-tunnel, driver ngrok, port [P, ...]      <id>-P   tunnel (driver: ngrok), one per port
    gateway http-tunnel, driver cloudflare, port [P]      <id>-P   tunnel (driver: cloudflare): a quick tunnel per port
    ... with token + hostname                             <id>     tunnel (driver: cloudflare, token, hostname): one connector
    gateway ssh-tunnel, port ["R:L", ...], connection     <id>-L   tunnel (driver: ssh, ssh: {...}), one connection per port
    ${gateway:P.public_url} / .public_address / .driver   ${nodes.<tunnel of P>.output.public_url} ...

The gateway's id is `gateway` when it has none. model-compose's `port` default (8090) and its
forms (`P`, `[P, ...]`; for ssh `"R:L"`, `"R:HOST:L"`, `[R, HOST, L]`) are read as it reads
them (`GatewayConfig.normalize_port`); an ssh forward to a host other than this one is
refused (flowctl's tunnels expose flowctl's own ports). An ssh connection's
`retry_interval`/`max_retry_count` are the tunnel's restart policy (a constant interval,
`0`: no limit), `keepalive_interval` its ServerAliveInterval.

`${gateway:...}` is no template syntax flowctl reads (a `:` after a source name), so it is
rewritten, in the file's values before anything else reads them, to `${gateway.port_P.field}`,
which the jobs' lowering binds (`lw.gateway_sources`) to the tunnel node's output; that
reference is also the graph's edge, so the tunnel is up before what reads it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..loader import PathKey
from . import model_compose_keys as keys

if TYPE_CHECKING:
    from .model_compose import _Lowering

_RUNTIME_NATIVE = ("native", {"type": "native"})

HTTP_TUNNEL = keys.Section(
    supported=frozenset({"id", "type", "driver", "port", "token", "hostname"}),
    unsupported=frozenset({"tunnel", "credentials_file"}),
    noop={"runtime": _RUNTIME_NATIVE},
)
SSH_TUNNEL = keys.Section(supported=frozenset({"id", "type", "port", "connection"}), noop={"runtime": _RUNTIME_NATIVE})
# `watch_interval` is how often model-compose polls its paramiko connection; ssh's own
# keepalives (`keepalive_interval`) notice a dead connection here, so it is accepted and ignored
SSH_CONNECTION = keys.Section(
    supported=frozenset({"host", "port", "auth", "keepalive_interval", "retry_interval", "max_retry_count"}),
    ignored=frozenset({"watch_interval"}),
)
SSH_AUTH = keys.Section(supported=frozenset({"type", "username", "keyfile"}), unsupported=frozenset({"password"}))

GATEWAY_TYPES = ("http-tunnel", "ssh-tunnel")
HTTP_DRIVERS = ("ngrok", "cloudflare")
#: what `${gateway:PORT.<field>}` may read (model-compose: `public_url` and `driver` of an
#: http tunnel, `public_address` of an ssh one; flowctl's tunnels have all three)
GATEWAY_FIELDS = ("public_url", "public_address", "driver")
#: model-compose's port when a gateway names none
DEFAULT_PORT = 8090
#: `max_retry_count: 0` (no limit) as a restart count
_UNLIMITED = 1_000_000
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")

#: `${gateway:8090.public_url ...}`: the source with its port and first step (`$${` is literal)
_REFERENCE = re.compile(r"(?<!\$)\$\{(\s*)gateway:(\d+)\.([A-Za-z_]\w*)")
_ANY_GATEWAY = re.compile(r"(?<!\$)\$\{\s*gateway\b")
_REWRITTEN = re.compile(r"\$\{\s*gateway\.port_\d+\.")


def lower_gateways(lw: _Lowering, data: dict[str, Any]) -> dict[str, Any]:
    """Add a tunnel node per exposed port (one per named Cloudflare tunnel) and return `data`
    with every `${gateway:PORT.field}` outside the gateways rewritten to that node's output."""
    by_port: dict[int, str] = {}
    for gateway_id, path, gateway in lw.entries(data, "gateway", "gateways"):
        _Gateway(lw, gateway_id or "gateway", path, gateway, by_port).lower()
    return {key: value if key in ("gateway", "gateways") else _rewrite(lw, value, (key,), by_port) for key, value in data.items()}


class _Gateway:
    def __init__(self, lw: _Lowering, gateway_id: str, path: PathKey, data: dict[str, Any], by_port: dict[int, str]) -> None:
        self.lw, self.id, self.path, self.data, self.by_port = lw, gateway_id, path, data, by_port
        self.base = keys.node_id(gateway_id, "gateway")

    def lower(self) -> None:
        kind = self.data.get("type")
        if kind == "http-tunnel":
            self.http_tunnel()
        elif kind == "ssh-tunnel":
            self.ssh_tunnel()
        elif kind is None:
            self.lw.error("missing required key 'type' in gateway", self.path, key=True, hint="flowctl runs: " + ", ".join(GATEWAY_TYPES))
        else:
            self.lw.error(f"gateway type '{kind}' is not supported by flowctl", (*self.path, "type"), hint="use " + " or ".join(GATEWAY_TYPES))

    def check(self, data: dict[str, Any], path: PathKey, section: keys.Section, where: str) -> None:
        keys.check_keys(data, path, section, where, self.lw.errors, self.lw.doc.locate)

    def add(self, node_id: str, node: dict[str, Any], ports: list[tuple[int, PathKey]], fields: dict[Any, PathKey]) -> None:
        node_id = self.lw.unique(node_id)
        self.lw.add_node(node_id, {"description": f"model-compose gateway '{self.id}'", **node}, self.path, fields)
        for port, where in ports:
            if port in self.by_port:
                self.lw.error(f"local port {port} is exposed by two gateways", where, hint="expose each port once")
            self.by_port[port] = node_id

    # -- http-tunnel -------------------------------------------------------------------------

    def http_tunnel(self) -> None:
        data, path = self.data, self.path
        self.check(data, path, HTTP_TUNNEL, "in gateway (http-tunnel)")
        for key in ("tunnel", "credentials_file"):
            if key in data:
                return  # reported by check(): a locally-managed named tunnel
        driver = data.get("driver")
        if driver not in HTTP_DRIVERS:
            where = (*path, "driver") if "driver" in data else path
            self.lw.error(f"http-tunnel driver {driver!r} is not supported by flowctl" if driver is not None else "missing required key 'driver' in gateway",
                          where, key=driver is None, hint="use `driver: ngrok` or `driver: cloudflare`")  # fmt: skip
            return
        ports = self.local_ports()
        named = "token" in data
        for key in ("token", "hostname"):
            if key in data and driver != "cloudflare":
                self.lw.error(f"`{key}` applies to a Cloudflare tunnel only", (*path, key), key=True)
        if named:
            if not data.get("hostname"):
                self.lw.error("a named Cloudflare tunnel (`token:`) needs `hostname:`", (*path, "token"), key=True,
                              hint="write the public hostname routed to the tunnel in Cloudflare (`hostname: app.example.com`): it is the tunnel's public_url")  # fmt: skip
                return
            node = {"type": "tunnel", "driver": "cloudflare", "token": str(data["token"]), "hostname": str(data["hostname"])}
            self.add(self.base, node, ports, {"token": (*path, "token"), "hostname": (*path, "hostname")})
            return
        for port, where in ports:
            self.add(f"{self.base}-{port}", {"type": "tunnel", "driver": driver, "port": port}, [(port, where)], {"port": where, "driver": (*path, "driver")})

    def local_ports(self) -> list[tuple[int, PathKey]]:
        value = self.data.get("port", DEFAULT_PORT)
        path = (*self.path, "port")
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        found = []
        for index, item in items:
            where = path if index is None else (*path, index)
            if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= 65535:
                self.lw.error("a gateway port must be a number from 1 to 65535", where)
                continue
            found.append((item, where))
        return found

    # -- ssh-tunnel --------------------------------------------------------------------------

    def ssh_tunnel(self) -> None:
        data, path = self.data, self.path
        self.check(data, path, SSH_TUNNEL, "in gateway (ssh-tunnel)")
        conn_path = (*path, "connection")
        if "connection" not in data:
            self.lw.error("missing required key 'connection' in gateway (ssh-tunnel)", path, key=True, hint="write `connection: {host, port, auth: {type: keyfile, username, keyfile}}`")
            return
        connection = self.lw.mapping(data["connection"], conn_path, "connection")
        if connection is None:
            return
        self.check(connection, conn_path, SSH_CONNECTION, "in gateway.connection")
        auth_path = (*conn_path, "auth")
        auth = self.lw.mapping(connection.get("auth"), auth_path, "connection.auth") if "auth" in connection else None
        if auth is None:
            if "auth" not in connection:
                self.lw.error("missing required key 'auth' in gateway.connection", conn_path, key=True, hint="write `auth: {type: keyfile, username: NAME, keyfile: PATH}`")
            return
        self.check(auth, auth_path, SSH_AUTH, "in gateway.connection.auth")
        auth_type = auth.get("type", "keyfile")
        if auth_type == "password":
            self.lw.error("ssh `auth: {type: password}` is not supported by flowctl", (*auth_path, "type"),
                          hint="flowctl runs the `ssh` program with BatchMode (nobody can type a password): use `type: keyfile`, or a key in ssh-agent")  # fmt: skip
            return
        missing = [key for key in ("host",) if key not in connection] + [key for key in ("username",) if key not in auth]
        for key in missing:
            self.lw.error(f"missing required key '{key}' in gateway.connection" + (".auth" if key == "username" else ""), conn_path if key == "host" else auth_path, key=True)
        if missing:
            return
        target: dict[str, Any] = {"host": str(connection["host"]), "port": connection.get("port", 22), "user": str(auth["username"]), "auth": str(auth_type)}
        if auth.get("keyfile") is not None:
            target["keyfile"] = str(auth["keyfile"])
        restart = self.restart(connection, conn_path)
        for remote, local, where in self.forwards():
            node: dict[str, Any] = {"type": "tunnel", "driver": "ssh", "port": local, "ssh": {**target, "remote_port": remote}}
            keepalive = keys.parse_duration(connection.get("keepalive_interval", "10s"))
            if keepalive is None:
                self.lw.error("`keepalive_interval` must be a duration such as 10s", (*conn_path, "keepalive_interval"))
            else:
                node["ssh"]["keepalive"] = keepalive
            if restart is not None and remote != 0:
                node["restart"] = restart
            self.add(f"{self.base}-{local}", node, [(local, where)], {"port": where, "ssh": conn_path, "restart": conn_path})

    def restart(self, connection: dict[str, Any], path: PathKey) -> dict[str, Any] | None:
        """model-compose reconnects every `retry_interval` (5s), up to `max_retry_count` times
        (0: no limit); flowctl's restart policy at a constant interval does the same."""
        interval = keys.parse_duration(connection.get("retry_interval", "5s"))
        count = connection.get("max_retry_count", 0)
        if interval is None:
            self.lw.error("`retry_interval` must be a duration such as 5s", (*path, "retry_interval"))
            return None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            self.lw.error("`max_retry_count` must be a whole number (0: no limit)", (*path, "max_retry_count"))
            return None
        return {"policy": "on-failure", "backoff": interval, "max_backoff": interval, "max_restarts": count or _UNLIMITED}

    def forwards(self) -> list[tuple[int, int, PathKey]]:
        """(remote port, local port, where) of each `port:` item: `P` (both P), `"R:L"`,
        `"R:HOST:L"`, `[R, HOST, L]`, HOST being this machine."""
        value = self.data.get("port", DEFAULT_PORT)
        path = (*self.path, "port")
        found = []
        for index, item in list(enumerate(value)) if isinstance(value, list) else [(None, value)]:
            where = path if index is None else (*path, index)
            forward = _forward(item)
            if forward is None:
                self.lw.error(f"ssh tunnel port {item!r} is not a forward flowctl can set up", where,
                              hint='write the local port (`8090`) or "REMOTE:LOCAL" (`"9834:8090"`): the remote port forwards to a port of this machine')  # fmt: skip
                continue
            found.append((*forward, where))
        return found


def _forward(item: Any) -> tuple[int, int] | None:
    """`(remote, local)` of one ssh `port:` item, or None when it is malformed or forwards to
    another host.

    >>> _forward(8090), _forward("9834:8090"), _forward("9834:localhost:8090"), _forward([0, "127.0.0.1", 8090])
    ((8090, 8090), (9834, 8090), (9834, 8090), (0, 8090))
    >>> _forward("9834:10.0.0.7:8090"), _forward("9834:example.com"), _forward("x")
    (None, None, None)
    """
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        parts: list[Any] = [item, "localhost", item]
    elif isinstance(item, str):
        parts = item.split(":")
        if len(parts) == 2:
            parts = [parts[0], "localhost", parts[1]]
    elif isinstance(item, list):
        parts = list(item)
    else:
        return None
    if len(parts) != 3 or str(parts[1]) not in _LOCAL_HOSTS:
        return None
    try:
        remote, local = int(str(parts[0])), int(str(parts[2]))
    except ValueError:
        return None
    if not (0 <= remote <= 65535 and 1 <= local <= 65535):
        return None
    return remote, local


def _rewrite(lw: _Lowering, value: Any, path: PathKey, by_port: dict[int, str]) -> Any:
    """`value` with `${gateway:PORT.field` turned into `${gateway.port_PORT.field`."""
    if isinstance(value, dict):
        return {key: _rewrite(lw, item, (*path, key), by_port) for key, item in value.items()}
    if isinstance(value, list):
        return [_rewrite(lw, item, (*path, index), by_port) for index, item in enumerate(value)]
    if not isinstance(value, str) or not _ANY_GATEWAY.search(value):
        return value

    def replace(match: re.Match[str]) -> str:
        space, port, field = match.group(1), int(match.group(2)), match.group(3)
        node, source = by_port.get(port), f"port_{port}"
        if node is not None and field in GATEWAY_FIELDS:
            lw.gateway_sources[("gateway", source)] = {name: f"${{nodes.{node}.output.{name}}}" for name in GATEWAY_FIELDS}
        else:
            lw.gateway_sources[("gateway", source, field)] = None  # reported here; bound to something, so reported once
            if node is None:
                exposed = ", ".join(str(p) for p in sorted(by_port))
                lw.error(f"no gateway exposes local port {port}", path,
                         hint=f"gateways expose: {exposed}" if exposed else "add a top-level `gateway:` with this port in its `port:` list")  # fmt: skip
            else:
                lw.error(f"a gateway has no '{field}'", path, hint="a gateway offers: " + ", ".join(GATEWAY_FIELDS))
        return f"${{{space}gateway.{source}.{field}"

    rewritten = _REFERENCE.sub(replace, value)
    if _ANY_GATEWAY.search(_REWRITTEN.sub("", rewritten)):
        lw.error("a gateway is read as `${gateway:PORT.public_url}` (or `.public_address`)", path,
                 hint="name the local port the gateway exposes, e.g. `${gateway:8090.public_url}`")  # fmt: skip
    return rewritten


__all__ = ["GATEWAY_FIELDS", "lower_gateways"]
