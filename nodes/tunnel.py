"""tunnel: give a local port a public address through a tunnel program the operator installed.

The tunnel is a supervised process like any managed server (`process_start.py` runs it: its
own process group, stopped with the flow, killed by the watchdog if flowctl is, its output in
`flowctl logs NODE`, its state in `flowctl ps` and `/ready`); it is ready once the program
prints the line that says the tunnel is up, and that line gives the public address (the
node's output, `${nodes.<id>.output.public_url}`). A tunnel that dies later is reported as a
dying service is. Each driver is one program, run with an argv (never a shell):

    driver       argv                                                        ready on the line
    ngrok        ngrok http 127.0.0.1:PORT --log stdout --log-format json    "msg":"started tunnel" ... "url":"https://..."
    cloudflare   cloudflared tunnel --no-autoupdate --url http://127.0.0.1:PORT   https://<name>.trycloudflare.com
    cloudflare   cloudflared tunnel --no-autoupdate run   (token: TUNNEL_TOKEN)   Registered tunnel connection
    ssh          ssh -v -N -R REMOTE:127.0.0.1:PORT -p SSH_PORT -i KEYFILE        remote forward success for: listen REMOTE
                 -o ExitOnForwardFailure=yes -o BatchMode=yes -o ServerAliveInterval=N USER@HOST

    gateway-8090:
      type: tunnel
      driver: ngrok               # or cloudflare (quick: no token), ssh
      port: 8090                  # the local port it exposes
      timeout: 60                 # seconds to wait for the public address
    # cloudflare named:  token: ${env.CLOUDFLARE_TUNNEL_TOKEN}, hostname: app.example.com
    # ssh:               ssh: {host: relay.example.com, port: 22, user: me, keyfile: ~/.ssh/id_ed25519, remote_port: 9834}

A named Cloudflare tunnel's token goes to cloudflared in its environment (`TUNNEL_TOKEN`),
not on its command line, so it is in no log and no `ps` listing. Tunnels whose address is
chosen at each start (ngrok without a reserved domain, a quick tunnel, an ssh remote port 0)
are not restarted: the address the flow hands out would change under it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..engine.errors import ServiceError
from .base import NodeKind, NodeSpecBase, ServiceContext, ServiceStatus
from .process_start import ProcessStartNode, ProcessStartSpec
from .readiness import ReadinessSpec
from .restart import RestartSpec

#: how to get each program, for the error when it is not on PATH
INSTALL_HINTS = {
    "ngrok": "install the ngrok agent (https://ngrok.com/download) and give it your account's token "
             "(`ngrok config add-authtoken TOKEN`, or NGROK_AUTHTOKEN in flowctl's environment)",
    "cloudflared": "install cloudflared (https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/, "
                   "or `brew install cloudflared`)",
    "ssh": "install the OpenSSH client (`apt install openssh-client`)",
}  # fmt: skip

_NGROK_URL = r'^(?=.*"msg":"started tunnel").*"url":"(?P<url>https://[^"]+)"'
_QUICK_URL = r"(?P<url>https://[a-zA-Z0-9-]+\.trycloudflare\.com)"
_NAMED_UP = r"Registered tunnel connection"
#: OpenSSH says, with -v, `remote forward success for: listen [ADDR:]PORT, connect ...`; for a
#: remote port 0 it then says which port the server chose
_SSH_FORWARD = r"remote forward success for: listen (?:\S+:)?{remote},"
_SSH_ALLOCATED = r"Allocated port (?P<remote>\d+) for remote forward"

Port = Annotated[int, Field(ge=1, le=65535)]


class SshTarget(BaseModel):
    """Where an ssh tunnel's remote end listens. `host`, `port`, `user`, `keyfile` and `auth`
    may be templates (`${env.SSH_HOST}`), read when the tunnel starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int | str = 22
    user: str
    #: the private key (`~` is the user's home); none: ssh's own defaults and agent
    keyfile: str | None = None
    #: only `keyfile` (ssh runs with BatchMode: it cannot be typed a password)
    auth: str = "keyfile"
    #: the port the server listens on for us; 0: the server chooses
    remote_port: Annotated[int, Field(ge=0, le=65535)]
    #: seconds between keepalives (ServerAliveInterval); 0: none
    keepalive: float = Field(default=10.0, ge=0)


class TunnelSpec(NodeSpecBase):
    kind: ClassVar[NodeKind] = NodeKind.SERVICE
    template_fields: ClassVar[tuple[str, ...]] = ("token", "hostname", "ssh")

    type: Literal["tunnel"]
    driver: Literal["ngrok", "cloudflare", "ssh"]
    #: the local port it exposes (a named Cloudflare tunnel's routes are set in Cloudflare)
    port: Port | None = None
    #: where that port listens here
    host: str = "127.0.0.1"
    #: a named Cloudflare tunnel's token (a template such as `${env.CLOUDFLARE_TUNNEL_TOKEN}`)
    token: str | None = None
    #: a named Cloudflare tunnel's public hostname: its address is https://HOSTNAME
    hostname: str | None = None
    ssh: SshTarget | None = None
    #: seconds to wait for the tunnel to be up and its public address known
    timeout: float = Field(default=60.0, gt=0)
    #: default: `on-failure` when the address is fixed (a named tunnel, an ssh remote port),
    #: else `never` (a new process would get a new address)
    restart: RestartSpec | None = None
    stop_timeout: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _driver_fields(self) -> TunnelSpec:
        named = self.driver == "cloudflare" and self.token is not None
        if self.port is None and not named:
            raise ValueError(f"a {self.driver} tunnel needs `port:` (the local port it exposes)")
        if named and not self.hostname:
            raise ValueError("a named Cloudflare tunnel (`token:`) needs `hostname:`: the public hostname routed to it in Cloudflare")
        if self.driver == "ssh" and self.ssh is None:
            raise ValueError("an ssh tunnel needs `ssh:` (host, user, remote_port)")
        unused = [name for name, wanted in (("token", self.driver == "cloudflare"), ("hostname", self.driver == "cloudflare"), ("ssh", self.driver == "ssh"))
                  if getattr(self, name) is not None and not wanted]  # fmt: skip
        if unused:
            raise ValueError(f"`{unused[0]}:` does not apply to a {self.driver} tunnel")
        return self

    @property
    def fixed_address(self) -> bool:
        """Its public address is known before it starts (and stays across restarts)."""
        return (self.driver == "cloudflare" and self.token is not None) or (self.driver == "ssh" and self.ssh is not None and self.ssh.remote_port != 0)

    def unservable(self) -> str | None:
        return "a tunnel carries requests from outside to a local port; send requests to that port's server"


@dataclass(frozen=True)
class Launch:
    """One tunnel process: what to run, the line that says it is up, and the public address
    that line gives (its named groups in, `{"public_url", "public_address"}` out)."""

    argv: list[str]
    env: dict[str, str]
    ready_on: str
    public: Callable[[Mapping[str, str]], dict[str, str]]


def plan(spec: TunnelSpec, resolved: Mapping[str, Any]) -> Launch:
    """The launch of `spec`, its templates already `resolved`; ValueError says what is wrong."""
    local = f"{spec.host}:{spec.port}"
    if spec.driver == "ngrok":
        return Launch(["ngrok", "http", local, "--log", "stdout", "--log-format", "json"], {}, _NGROK_URL, _from_url)
    if spec.driver == "cloudflare" and spec.token is None:
        return Launch(["cloudflared", "tunnel", "--no-autoupdate", "--url", f"http://{local}"], {}, _QUICK_URL, _from_url)
    if spec.driver == "cloudflare":
        token, hostname = str(resolved.get("token") or ""), str(resolved.get("hostname") or "")
        if not token:
            raise ValueError("the tunnel token is empty")
        url = f"https://{hostname}"
        return Launch(["cloudflared", "tunnel", "--no-autoupdate", "run"], {"TUNNEL_TOKEN": token}, _NAMED_UP, lambda _groups: _from_url({"url": url}))
    return _ssh_launch(spec, resolved.get("ssh") or {})


def _ssh_launch(spec: TunnelSpec, target: Mapping[str, Any]) -> Launch:
    assert spec.ssh is not None  # the spec's validator says so
    if str(target.get("auth", "keyfile")) != "keyfile":
        raise ValueError(f"ssh auth type {target.get('auth')!r} is not supported: flowctl runs ssh with BatchMode (nobody can type a "
                         "password); use a keyfile (`auth: {type: keyfile, keyfile: ...}`) or a key in ssh-agent")  # fmt: skip
    host, user = str(target.get("host") or ""), str(target.get("user") or "")
    if not host or not user:
        raise ValueError("the ssh host and user must not be empty")
    if host.startswith("-") or user.startswith("-"):  # ssh would read `USER@HOST` as an option
        raise ValueError(f"the ssh destination {user}@{host!s} starts with '-'")
    try:
        ssh_port = int(str(target.get("port", 22)))
        if not 1 <= ssh_port <= 65535:
            raise ValueError
    except ValueError:
        raise ValueError(f"the ssh port {target.get('port')!r} is not a port number") from None
    remote = spec.ssh.remote_port
    argv = ["ssh", "-v", "-N", "-R", f"{remote}:{spec.host}:{spec.port}", "-p", str(ssh_port)]
    if target.get("keyfile"):
        argv += ["-i", os.path.expanduser(str(target["keyfile"]))]
    argv += ["-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes"]
    if spec.ssh.keepalive:
        argv += ["-o", f"ServerAliveInterval={spec.ssh.keepalive:g}"]
    argv.append(f"{user}@{host}")
    ready_on = _SSH_ALLOCATED if remote == 0 else _SSH_FORWARD.format(remote=remote)

    def public(groups: Mapping[str, str]) -> dict[str, str]:
        address = f"{host}:{groups.get('remote', remote)}"
        return {"public_address": address, "public_url": f"http://{address}"}

    return Launch(argv, {}, ready_on, public)


def _from_url(groups: Mapping[str, str]) -> dict[str, str]:
    url = groups["url"]
    return {"public_url": url, "public_address": url.split("://", 1)[-1].rstrip("/")}


class TunnelNode:
    """A tunnel: its launch planned at start (templates read then), run by a process-start."""

    def __init__(self, spec: TunnelSpec) -> None:
        self.spec = spec
        self._process: ProcessStartNode | None = None
        self._status = ServiceStatus()

    @property
    def status(self) -> ServiceStatus:
        return self._process.status if self._process is not None else self._status

    async def start(self, ctx: ServiceContext) -> dict[str, Any]:
        spec = self.spec
        try:
            launch = plan(spec, ctx.resolved)
        except ValueError as exc:
            raise ServiceError(ctx.node_id, str(exc)) from None
        program = launch.argv[0]
        if shutil.which(program) is None:
            raise ServiceError(ctx.node_id, f"`{program}` is not installed (not found on PATH) and the {spec.driver} tunnel runs it",
                               hint=INSTALL_HINTS[program])  # fmt: skip
        restart = spec.restart or RestartSpec(policy="on-failure" if spec.fixed_address else "never")
        inner = ProcessStartSpec(type="process-start", command=launch.argv, env=launch.env, restart=restart, stop_timeout=spec.stop_timeout,
                                 readiness=ReadinessSpec(log=launch.ready_on, timeout=spec.timeout))  # fmt: skip
        self._process = ProcessStartNode(inner)
        try:
            await self._process.start(dataclasses.replace(ctx, resolved={"command": launch.argv, "env": launch.env}, render=None))
        except ServiceError as exc:
            if exc.hint is None or "readiness.timeout" not in exc.hint:
                raise
            raise ServiceError(ctx.node_id, exc.message.removeprefix(f"service '{ctx.node_id}': "),
                               hint=f"see `flowctl logs {ctx.node_id}` for what {program} said; raise the tunnel's `timeout:` if it is only slow") from None
        public = launch.public(self._process.matched or {})
        ctx.event(f"{spec.host}:{spec.port} is public at {public['public_url']}" if spec.port else f"public at {public['public_url']}")
        return {"driver": spec.driver, "port": spec.port, "pid": self._process.output["pid"], "url": public["public_url"], **public}

    async def stop(self) -> None:
        if self._process is not None:
            await self._process.stop()

    async def exited_within(self, timeout: float) -> bool:
        return await self._process.exited_within(timeout) if self._process is not None else True

    def exiting(self) -> bool:
        return self._process is not None and self._process.exiting()

    @property
    def log_path(self) -> Any:
        return self._process.log_path if self._process is not None else None


__all__ = ["INSTALL_HINTS", "Launch", "SshTarget", "TunnelNode", "TunnelSpec", "plan"]
