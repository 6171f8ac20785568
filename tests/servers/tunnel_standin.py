#!/usr/bin/env python3
"""Stand-ins for the tunnel programs flowctl's gateways run: installed by a test as `ngrok`,
`cloudflared` and `ssh` (this script, under those names, first on PATH). Each prints the lines
the real program prints when its tunnel is up (the lines flowctl reads the public address
from), then stays up until it is stopped, as the real ones do. Standard library only.

    ngrok http 127.0.0.1:8090 --log stdout --log-format json   → https://standin-8090.ngrok-free.app
    cloudflared tunnel --no-autoupdate --url http://127.0.0.1:8090   → https://standin-8090.trycloudflare.com
    cloudflared tunnel --no-autoupdate run   (TUNNEL_TOKEN set)       → "Registered tunnel connection"
    ssh -v -N -R 9834:127.0.0.1:8090 ... USER@HOST               → "remote forward success for: listen 9834"

`STANDIN_RECORD=FILE` appends one JSON line per start: the program, its argv, its pid and
whether TUNNEL_TOKEN was in its environment (never its value). `STANDIN_FAIL=TEXT` makes it
print TEXT (to stderr) and exit 1 before any tunnel is up, as a program refused by its
service does. The formats are the real programs' (ngrok's JSON log, cloudflared's boxed
quick-tunnel URL on stderr, OpenSSH's `-v` debug lines on stderr).

`STANDIN_RELAY=PEM` (a file with a certificate for 127.0.0.1 and its key) makes `ngrok` a
tunnel that really carries traffic: it listens for TLS on a free port of 127.0.0.1, prints
`https://127.0.0.1:THAT_PORT` as its public URL, and relays each connection, decrypted, to
the exposed local port (one `{"relayed": ...}` line in `STANDIN_RECORD` per connection). A
client reaches it by trusting PEM (`SSL_CERT_FILE=PEM`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

STAMP = "2026-12-02T19:00:00Z"


def say(line: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(line + "\n")
    stream.flush()


def record(entry: dict[str, object]) -> None:
    path = os.environ.get("STANDIN_RECORD")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps(entry) + "\n")


def pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def relay(pem: str, local_port: int) -> str:
    """A TLS endpoint on 127.0.0.1 relaying to `local_port`, as the real tunnel's public
    address does; its URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            client.settimeout(10)  # a handshake that never comes does not hold the relay up
            try:
                public = context.wrap_socket(client, server_side=True)
                local = socket.create_connection(("127.0.0.1", local_port), timeout=10)
            except OSError as exc:
                say(f"relay: {exc}", err=True)
                client.close()
                continue
            record({"relayed": f"127.0.0.1:{listener.getsockname()[1]} -> 127.0.0.1:{local_port}"})
            threading.Thread(target=pump, args=(public, local), daemon=True).start()
            threading.Thread(target=pump, args=(local, public), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return f"https://127.0.0.1:{listener.getsockname()[1]}"


def ngrok(args: list[str]) -> None:
    addr = args[1] if len(args) > 1 else "80"
    port = addr.rsplit(":", 1)[-1]
    pem = os.environ.get("STANDIN_RELAY")
    url = relay(pem, int(port)) if pem else f"https://standin-{port}.ngrok-free.app"
    for record in (
        {"lvl": "info", "msg": "no configuration paths supplied", "t": STAMP},
        {"addr": "127.0.0.1:4040", "lvl": "info", "msg": "starting web service", "obj": "web", "t": STAMP},
        {"lvl": "info", "msg": "tunnel session started", "obj": "tunnels.session", "t": STAMP},
        {"addr": f"http://{addr}", "lvl": "info", "msg": "started tunnel", "name": "command_line", "obj": "tunnels", "t": STAMP,
         "url": url},
    ):  # fmt: skip
        say(json.dumps(record, separators=(",", ":")))


def cloudflared(args: list[str]) -> None:
    if "run" in args:
        if not os.environ.get("TUNNEL_TOKEN"):
            say(f'{STAMP} ERR "cloudflared tunnel run" requires the ID or name of the tunnel to run as the last command line argument or in the configuration file.', err=True)
            sys.exit(1)
        say(f"{STAMP} INF Starting tunnel tunnelID=6ff42ae2-765d-4adf-8112-31c55c1551ef", err=True)
        say(f"{STAMP} INF Registered tunnel connection connIndex=0 connection=a1b2 event=0 ip=198.41.200.13 location=ams01 protocol=quic", err=True)
        return
    url = args[args.index("--url") + 1]
    port = url.rsplit(":", 1)[-1]
    say(f"{STAMP} INF Requesting new quick Tunnel on trycloudflare.com...", err=True)
    say(f"{STAMP} INF +--------------------------------------------------------------------------------------------+", err=True)
    say(f"{STAMP} INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |", err=True)
    say(f"{STAMP} INF |  https://standin-{port}.trycloudflare.com                                                  |", err=True)
    say(f"{STAMP} INF +--------------------------------------------------------------------------------------------+", err=True)
    say(f"{STAMP} INF Registered tunnel connection connIndex=0 connection=c3d4 event=0 ip=198.41.192.7 location=ams08 protocol=quic", err=True)


def ssh(args: list[str]) -> None:
    forward = args[args.index("-R") + 1]
    remote, host, local = forward.split(":")
    port = args[args.index("-p") + 1] if "-p" in args else "22"
    target = args[-1].split("@", 1)[-1]
    say("OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13 30 Jan 2024", err=True)
    say(f"debug1: Connecting to {target} [{target}] port {port}.", err=True)
    say(f'debug1: Authenticated to {target} ([{target}]:{port}) using "publickey".', err=True)
    say(f"debug1: Remote connections from LOCALHOST:{remote} forwarded to local address {host}:{local}", err=True)
    say(f"debug1: remote forward success for: listen {remote}, connect {host}:{local}", err=True)
    if remote == "0":
        say(f"Allocated port 40123 for remote forward to {host}:{local}", err=True)
    say("debug1: forwarding_success: all expected forwarding replies received", err=True)


def main() -> None:
    program = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    record({"program": program, "argv": args, "pid": os.getpid(), "token_in_env": "TUNNEL_TOKEN" in os.environ})
    failure = os.environ.get("STANDIN_FAIL")
    if failure:
        say(failure, err=True)
        sys.exit(1)
    {"ngrok": ngrok, "cloudflared": cloudflared, "ssh": ssh}[program](args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:  # up until stopped, as the real tunnel is
        time.sleep(3600)


if __name__ == "__main__":
    main()
