"""What `flowctl up` is asked to do (`UpOptions`, filled by the CLI or by any caller), and the
listen settings it resolves to against the flow's `server:` section (`Settings`). The server
takes these typed objects, never the CLI's parsed arguments.

Where each listen setting comes from, first match wins: the option (`--host`, `--port`,
`--ui-port`), then the environment (`FLOWCTL_HOST`, `FLOWCTL_PORT`, `FLOWCTL_UI_PORT`), then
the flow's `server:` section, then the defaults (127.0.0.1, 8080, 8081).

    >>> from flowctl.engine.spec import ServerSpec
    >>> settings = resolve_settings(ServerSpec(port=9000), UpOptions(flow="f.yml", ui_port=0), environ={})
    >>> settings.port, settings.ui_port, settings.url(9000, "/api")
    (9000, None, 'http://127.0.0.1:9000/api')
    >>> resolve_settings(ServerSpec(port=9000), UpOptions(flow="f.yml"), environ={"FLOWCTL_PORT": "9100"}).port
    9100
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..engine.errors import UsageError
from ..engine.spec import ServerSpec
from .bind import url_for
from .console import Format

#: the environment variables of the listen settings
HOST_VAR, PORT_VAR, UI_PORT_VAR = "FLOWCTL_HOST", "FLOWCTL_PORT", "FLOWCTL_UI_PORT"


@dataclass(frozen=True)
class UpOptions:
    flow: str | Path
    #: bind address; None: the flow's `server.host`
    host: str | None = None
    #: API port; None: the flow's `server.port`
    port: int | None = None
    #: web UI port; None: the flow's `server.ui_port`; 0 turns the UI off
    ui_port: int | None = None
    #: allow a non-loopback bind without FLOWCTL_API_KEY
    insecure: bool = False
    #: hot-reload the flow file on save
    reload: bool = True
    #: run in the background (`detach.py`)
    detach: bool = False
    #: this `up` is the background copy that `-d` started
    in_background: bool = False
    #: set environments up again even where their stamp is current
    build: bool = False
    #: show the services' own output on the console too (it is in their logs anyway)
    verbose: bool = False
    #: the console's format: auto (colour on a terminal, else plain), color, plain, json
    log_format: Format = "auto"


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    base_path: str
    ui_port: int | None
    drain_timeout: float

    def url(self, port: int, path: str = "") -> str:
        return url_for(self.host, port, path)


def resolve_settings(server: ServerSpec, options: UpOptions, environ: Mapping[str, str] = os.environ) -> Settings:
    """The flow's `server:` section, overridden by the environment, overridden by the options.
    Raises UsageError for a port variable that is not a port number."""
    ui_port = server.ui_port
    chosen_ui = options.ui_port if options.ui_port is not None else _port_from(environ, UI_PORT_VAR, allow_zero=True)
    if chosen_ui is not None:
        ui_port = chosen_ui or None  # --ui-port 0 turns it off
    port = options.port if options.port is not None else _port_from(environ, PORT_VAR)
    return Settings(
        host=options.host or environ.get(HOST_VAR) or server.host,
        port=server.port if port is None else port,
        base_path=server.base_path,
        ui_port=ui_port,
        drain_timeout=server.drain_timeout,
    )


def _port_from(environ: Mapping[str, str], name: str, *, allow_zero: bool = False) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    lowest = 0 if allow_zero else 1
    if not text.isdigit() or not lowest <= int(text) <= 65535:
        raise UsageError(f"${name} is '{text[:40]}', not a port number ({lowest}..65535)")
    return int(text)


__all__ = ["HOST_VAR", "PORT_VAR", "UI_PORT_VAR", "Settings", "UpOptions", "resolve_settings"]
