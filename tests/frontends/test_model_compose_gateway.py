"""model-compose's `gateway:` runs: each tunnel a supervised process, its public address in
`${gateway:PORT.public_url}` / `.public_address`.

The tunnel programs are stand-ins (`tests/servers/tunnel_standin.py`, installed as `ngrok`,
`cloudflared` and `ssh` first on PATH) that print the lines the real programs print when the
tunnel is up and stay up until stopped. Each test runs real processes: flowctl starts the
stand-in, reads the public address from its output, and an http-client job sends it, in its
body, to the stand-in HTTP API (`tests/servers/echo_http.py`), which echoes it back. Stopping
flowctl (SIGTERM, or SIGKILL) leaves no tunnel running; a missing program and one that exits
before its tunnel is up are errors that say so.

End to end, model-compose's ngrok example runs under `flowctl up` with its callback
listener: the stand-in ngrok relays a real TLS address (`STANDIN_RELAY`) to the listener's
port, and the stand-in upstream (`tests/servers/callback_upstream.py`) calls back through it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from supervision.supervision_support import MARK_ENV, marked
from support.echo import EchoServer, echo_server
from support.model_compose import FLOWCTL, assert_error_at, run, spec_of
from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port
from support.waiting import wait_until

from flowctl.nodes.tunnel import TunnelSpec, plan

STANDIN = TESTS_DIR / "servers" / "tunnel_standin.py"
UPSTREAM = str(TESTS_DIR / "servers" / "callback_upstream.py")


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with echo_server() as server:
        yield server


@pytest.fixture
def tools(tmp_path: Path) -> dict[str, str]:
    """An environment with the stand-in tunnel programs first on PATH; each start is recorded
    in `STANDIN_RECORD`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("ngrok", "cloudflared", "ssh"):
        (bin_dir / name).symlink_to(STANDIN)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STANDIN_RECORD": str(tmp_path / "starts.jsonl")}


def starts(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["STANDIN_RECORD"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def gone(pid: int) -> None:
    wait_until(lambda: not alive(pid), timeout=15, message=f"tunnel process {pid} outlived flowctl")


def flow(gateway: str, echo_url: str, callback: str) -> str:
    """A model-compose file: `gateway` (YAML lines) and a job that POSTs `callback` to the
    echo server."""
    return f"""\
controller:
  type: http-server
  base_path: /api
{gateway}
component:
  type: http-client
  base_url: {echo_url}
  action:
    method: POST
    path: /echo
    body:
      data: ${{input.data}}
      callback_url: {callback}
      task_id: ${{context.run_id}}
    output: ${{response.echo}}
workflow:
  input: ${{input}}
  output: ${{output}}
"""


def ngrok_gateway(port: int) -> str:
    return f"gateway:\n  type: http-tunnel\n  driver: ngrok\n  port:\n    - {port}\n"


#: (gateway YAML for local port P, the callback template, what reaches the upstream, the
#: program, its argv, extra environment) — the corpus examples' gateway sections
CASES = {
    "ngrok": (
        ngrok_gateway,
        "${{gateway:{port}.public_url}}/callback",
        "https://standin-{port}.ngrok-free.app/callback",
        "ngrok", ["http", "127.0.0.1:{port}", "--log", "stdout", "--log-format", "json"], {},
    ),
    "cloudflare-quick": (
        lambda port: f"gateway:\n  type: http-tunnel\n  driver: cloudflare\n  port:\n    - {port}\n",
        "${{gateway:{port}.public_url}}/callback",
        "https://standin-{port}.trycloudflare.com/callback",
        "cloudflared", ["tunnel", "--no-autoupdate", "--url", "http://127.0.0.1:{port}"], {},
    ),
    "cloudflare-named": (
        lambda port: ("gateway:\n  type: http-tunnel\n  driver: cloudflare\n  token: ${env.CLOUDFLARE_TUNNEL_TOKEN}\n"
                      f"  hostname: app.example.com\n  port:\n    - {port}\n"),
        "${{gateway:{port}.public_url}}/callback",
        "https://app.example.com/callback",
        "cloudflared", ["tunnel", "--no-autoupdate", "run"], {"CLOUDFLARE_TUNNEL_TOKEN": "eyJhIjoic2VjcmV0LXRva2VuIn0"},
    ),
    "ssh": (
        lambda port: f"""\
gateway:
  type: ssh-tunnel
  port:
    - "9834:{port}"
  connection:
    host: ${{env.SSH_TUNNEL_HOST}}
    port: ${{env.SSH_TUNNEL_PORT | 22}}
    auth:
      type: ${{env.SSH_AUTH_TYPE | keyfile}}
      username: ${{env.SSH_USERNAME}}
      keyfile: ${{env.SSH_KEYFILE | ~/.ssh/id_rsa}}
""",
        "http://${{gateway:{port}.public_address}}/callback",
        "http://relay.example.com:9834/callback",
        "ssh", ["-v", "-N", "-R", "9834:127.0.0.1:{port}", "-p", "2222", "-i", "/keys/tunnel", "-o", "ExitOnForwardFailure=yes",
                "-o", "BatchMode=yes", "-o", "ServerAliveInterval=10", "me@relay.example.com"],
        {"SSH_TUNNEL_HOST": "relay.example.com", "SSH_TUNNEL_PORT": "2222", "SSH_USERNAME": "me", "SSH_KEYFILE": "/keys/tunnel"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_the_public_address_reaches_the_upstream_request_and_the_tunnel_stops_with_the_run(
    case: str, tmp_path: Path, echo: EchoServer, tools: dict[str, str]
) -> None:
    gateway, callback, expected, program, argv, extra_env = CASES[case]
    port = free_port()
    text = flow(gateway(port), echo.url, callback.format(port=port))
    env = {**tools, **extra_env}
    output = run(tmp_path, text, "data=hello", env=env)
    assert (output["data"], output["callback_url"]) == ("hello", expected.format(port=port))
    [start] = starts(env)
    assert start["program"] == program
    assert start["argv"] == [arg.format(port=port) for arg in argv]
    gone(start["pid"])  # `flowctl run` stopped it on its way out
    if case == "cloudflare-named":  # the token reaches cloudflared in its environment, never its argv
        assert start["token_in_env"] and extra_env["CLOUDFLARE_TUNNEL_TOKEN"] not in " ".join(start["argv"])


def test_a_token_is_in_no_log(tmp_path: Path, echo: EchoServer, tools: dict[str, str], flowctl_up: Any) -> None:
    gateway, callback, *_ , extra_env = CASES["cloudflare-named"]
    port = free_port()
    up = flowctl_up(flow(gateway(port), echo.url, callback.format(port=port)), env={**tools, **extra_env})
    reply = httpx.post(up.api + "/workflows/runs", json={"input": {"data": "hello"}, "wait_for_completion": True, "output_only": True}, timeout=30)
    assert reply.json()["callback_url"] == "https://app.example.com/callback"
    up.stop()
    token = extra_env["CLOUDFLARE_TUNNEL_TOKEN"]
    logs = [up.log_text(), *(path.read_text() for path in (up.flow_path.parent / ".flowctl").rglob("*.log"))]
    assert "Registered tunnel connection" in "".join(logs)  # the tunnel's own log is there
    assert not [log for log in logs if token in log]


def test_flowctl_up_shows_the_tunnel_and_stopping_or_killing_it_leaves_no_tunnel(
    tmp_path: Path, echo: EchoServer, tools: dict[str, str], flowctl_up: Any
) -> None:
    port = free_port()
    text = flow(ngrok_gateway(port), echo.url, f"${{gateway:{port}.public_url}}/callback")
    for stop in ("SIGTERM", "SIGKILL"):
        up = flowctl_up(text, env=tools)
        tunnel = _services(up)[f"gateway-{port}"]
        assert tunnel["state"] == "ready" and tunnel["url"] == f"https://standin-{port}.ngrok-free.app"
        pid = starts(tools)[-1]["pid"]
        assert alive(pid)
        if stop == "SIGTERM":
            assert up.stop() == 0
        else:
            os.kill(up.pid, signal.SIGKILL)  # flowctl alone: the tunnel is in a session of its own
            up.wait()
        gone(pid)


def test_a_tunnel_that_dies_is_reported_as_a_dying_service(tmp_path: Path, echo: EchoServer, tools: dict[str, str], flowctl_up: Any) -> None:
    port = free_port()
    up = flowctl_up(flow(ngrok_gateway(port), echo.url, f"${{gateway:{port}.public_url}}"), env=tools)
    os.kill(starts(tools)[-1]["pid"], signal.SIGKILL)

    def down() -> dict[str, Any] | None:
        reply = httpx.get(up.api + "/ready", timeout=5)
        tunnel = _services(up, reply)[f"gateway-{port}"]
        return tunnel if reply.status_code == 503 and tunnel["state"] == "failed" else None

    tunnel = wait_until(down, timeout=15, message=lambda: up.log_tail())
    assert "SIGKILL" in str(tunnel)
    wait_until(lambda: "SIGKILL" in up.log_text(), timeout=10, message=lambda: up.log_tail())


def _services(up: Any, reply: httpx.Response | None = None) -> dict[str, Any]:
    services: dict[str, Any] = (reply or httpx.get(up.api + "/ready", timeout=5)).json()["services"]
    return services


def _run_fails(tmp_path: Path, text: str, env: dict[str, str]) -> str:
    path = tmp_path / "model-compose.yml"
    path.write_text(text)
    result = subprocess.run([FLOWCTL, "run", str(path), "-i", "data=hello"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "FLOWCTL_HOME": str(tmp_path / "home"), **env})  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def test_a_missing_program_is_named_with_how_to_install_it(tmp_path: Path, echo: EchoServer) -> None:
    port = free_port()
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    err = _run_fails(tmp_path, flow(ngrok_gateway(port), echo.url, f"${{gateway:{port}.public_url}}"), {"PATH": str(empty)})
    assert f"service 'gateway-{port}'" in err and "`ngrok` is not installed" in err and "https://ngrok.com/download" in err, err


def test_a_program_that_exits_before_its_tunnel_is_up_fails_with_its_last_words(tmp_path: Path, echo: EchoServer, tools: dict[str, str]) -> None:
    port = free_port()
    refusal = "ERROR:  authentication failed: The authtoken you specified is properly formed, but it is invalid.  ERR_NGROK_107"
    err = _run_fails(tmp_path, flow(ngrok_gateway(port), echo.url, f"${{gateway:{port}.public_url}}"), {**tools, "STANDIN_FAIL": refusal})
    assert f"service 'gateway-{port}'" in err and "exited with code 1 before it was ready" in err and "ERR_NGROK_107" in err, err


def test_the_lowered_nodes() -> None:
    spec = spec_of(flow(CASES["ssh"][0](8090), "http://127.0.0.1:9", "http://${gateway:8090.public_address}/callback"))
    tunnel = spec.nodes["gateway-8090"]
    assert (tunnel.type, tunnel.driver, tunnel.port, tunnel.ssh.remote_port) == ("tunnel", "ssh", 8090, 9834)
    assert tunnel.restart.policy == "on-failure" and tunnel.restart.backoff == tunnel.restart.max_backoff == 5.0  # model-compose's retry_interval
    assert spec.nodes["job"].body["callback_url"] == "http://${nodes.gateway-8090.output.public_address}/callback"
    named = spec_of(flow(CASES["cloudflare-named"][0](8090), "http://127.0.0.1:9", "${gateway:8090.public_url}"))
    assert (named.nodes["gateway"].token, named.nodes["gateway"].port) == ("${env.CLOUDFLARE_TUNNEL_TOKEN}", None)
    several = spec_of(flow("gateway:\n  type: http-tunnel\n  driver: ngrok\n  port: [8090, 8091]\n", "http://127.0.0.1:9", "${gateway:8091.public_url}"))
    assert {"gateway-8090", "gateway-8091"} <= set(several.nodes)


GATEWAY_ERRORS = [
    ("gateway:\n  type: http-tunnel\n  driver: ngrok\n  port: [8090]\n", "${gateway:8091.public_url}", "callback_url", "no gateway exposes local port 8091", "8090"),
    ("gateway:\n  type: http-tunnel\n  driver: ngrok\n  port: [8090]\n", "${gateway:8090.url}", "callback_url", "a gateway has no 'url'", "public_url"),
    ("gateway:\n  type: http-tunnel\n  driver: ngrok\n  port: [8090]\n", "${gateway.public_url}", "callback_url", "`${gateway:PORT.public_url}`", "8090"),
    ("", "${gateway:8090.public_url}", "callback_url", "no gateway exposes local port 8090", "add a top-level `gateway:`"),
    ("gateway:\n  type: http-tunnel\n  driver: localtunnel\n", "x", "driver:", "driver 'localtunnel' is not supported", "driver: ngrok"),
    ("gateway:\n  type: http-tunnel\n  driver: cloudflare\n  token: t\n", "x", "token:", "needs `hostname:`", "app.example.com"),
    ("gateway:\n  type: http-tunnel\n  driver: cloudflare\n  tunnel: t\n  credentials_file: c.json\n", "x", "tunnel:", "key 'tunnel'", None),
    ("gateway:\n  type: ssh-tunnel\n  port: [\"9834:10.0.0.7:8090\"]\n  connection: {host: h, auth: {type: keyfile, username: u}}\n", "x", "9834:10.0.0.7",
     "not a forward flowctl can set up", "REMOTE:LOCAL"),
    ("gateway:\n  type: ssh-tunnel\n  port: [8090]\n  connection:\n    host: h\n    auth:\n      type: password\n      username: u\n", "x", "type: password",
     "`auth: {type: password}` is not supported", "keyfile"),
    ("gateway:\n  type: tcp-tunnel\n", "x", "tcp-tunnel", "gateway type 'tcp-tunnel' is not supported", "ssh-tunnel"),
]  # fmt: skip


@pytest.mark.parametrize(("gateway", "callback", "marker", "message", "hint"), GATEWAY_ERRORS)
def test_what_is_wrong_is_reported_at_its_line(gateway: str, callback: str, marker: str, message: str, hint: str | None) -> None:
    assert_error_at(flow(gateway, "http://127.0.0.1:9", callback), marker, message, hint)


def test_an_ssh_launch_from_its_resolved_templates() -> None:
    spec = TunnelSpec(type="tunnel", driver="ssh", port=8090, ssh={"host": "h", "user": "u", "remote_port": 0})
    launch = plan(spec, {"ssh": {"host": "relay", "user": "me", "port": "22", "auth": "keyfile"}})
    assert launch.argv[-1] == "me@relay" and "-i" not in launch.argv  # no keyfile: ssh's defaults and agent
    assert launch.public({"remote": "40123"}) == {"public_address": "relay:40123", "public_url": "http://relay:40123"}  # remote port 0
    assert not spec.fixed_address
    with pytest.raises(ValueError, match="BatchMode"):
        plan(spec, {"ssh": {"host": "relay", "user": "me", "auth": "password"}})
    with pytest.raises(ValueError, match="starts with '-'"):
        plan(spec, {"ssh": {"host": "relay", "user": "-oProxyCommand=touch /tmp/x"}})
    with pytest.raises(ValueError, match="not a port number"):
        plan(spec, {"ssh": {"host": "relay", "user": "me", "port": "twenty-two"}})


# model-compose's gateway/http-tunnel/ngrok example as written, but for its ports (free ones),
# the listener's host (127.0.0.1, not 0.0.0.0: the tunnel reaches it over loopback, so there
# is no reason to open it to the network, and flowctl refuses 0.0.0.0 without --insecure) and
# its component's `start:` (the stand-in upstream instead of the example's own uvicorn app)
NGROK_EXAMPLE = """\
controller:
  type: http-server
  port: {api}
  base_path: /api
  webui:
    port: {ui}

gateway:
  type: http-tunnel
  driver: ngrok
  port:
    - {listen}  # Expose local port {listen} via ngrok tunnel

listener:
  type: http-callback
  host: 127.0.0.1
  port: {listen}
  path: /callback
  identify_by: ${{body.task_id}}
  result: ${{body.result}}

workflow:
  title: Ngrok HTTP Tunnel Gateway Example
  description: Demonstrates using ngrok to expose local callback listener to external services
  input: ${{input}}
  output: ${{output}}

component:
  type: http-server
  start: [ {python}, {upstream}, --port, "{port}" ]
  port: {port}
  action:
    method: POST
    path: /process
    headers:
      Content-Type: application/json
    body:
      data: ${{input.data}}
      # Use gateway's public url for callback
      callback_url: ${{gateway:{listen}.public_url}}/callback
      task_id: ${{context.run_id}}
    completion:
      type: callback
      wait_for: ${{context.run_id}}
    output:
      task_id: ${{response.task_id}}
      result: ${{result as json}}
"""


def _certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and its key, in one PEM file."""
    pem = tmp_path / "standin-tunnel.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(pem), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    pem.write_text(pem.read_text() + (tmp_path / "cert.pem").read_text())
    return pem


def test_the_ngrok_example_runs_its_callback_through_the_tunnel_and_stopping_leaves_no_process(
    tmp_path: Path, tools: dict[str, str], flowctl_up: Any, mark: str
) -> None:
    api, ui, listen, port = free_port(), free_port(), free_port(), free_port()
    text = NGROK_EXAMPLE.format(api=api, ui=ui, listen=listen, port=port, python=PYTHON, upstream=UPSTREAM)
    pem = _certificate(tmp_path)
    # the stand-in ngrok relays its public https://127.0.0.1:R to the listener's port; the
    # upstream trusts its certificate; every process flowctl starts carries the mark
    env = {**tools, "STANDIN_RELAY": str(pem), "SSL_CERT_FILE": str(pem), MARK_ENV: mark}
    up = flowctl_up(text, env=env, api_port=api, ui_port=ui, timeout=60.0)
    [start] = [entry for entry in starts(env) if "program" in entry]
    tunnel = _services(up)[f"gateway-{listen}"]
    assert tunnel["state"] == "ready" and tunnel["url"].startswith("https://127.0.0.1:"), tunnel

    with up.client(timeout=30.0) as client:
        reply = client.post("/workflows/__default__/runs", json={"input": {"data": "photo-1"}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    # `${response.task_id}` from the upstream's answer, `${result}` from its callback
    assert body["output"] == {"task_id": body["run_id"], "result": {"processed": "photo-1"}}, body
    # ... which came in through the tunnel's public address, not straight to the listener
    relayed = f"{tunnel['url'].removeprefix('https://')} -> 127.0.0.1:{listen}"
    assert relayed in [entry.get("relayed") for entry in starts(env)], starts(env)

    upstream = [proc.pid for proc in marked(mark) if UPSTREAM in proc.cmdline]
    assert len(upstream) == 1 and alive(start["pid"]), marked(mark)
    assert up.stop() == 0
    gone(start["pid"])
    wait_until(lambda: not marked(mark), timeout=15, message=lambda: f"outlived flowctl: {marked(mark)}")
