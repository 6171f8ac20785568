"""What `flowctl up` is asked to do (`UpOptions`, filled by the CLI or by any caller), and the
listen settings it resolves to against the flow's `server:` section (`Settings`). The server
takes these typed objects, never the CLI's parsed arguments.

    >>> from flowctl.engine.spec import ServerSpec
    >>> settings = resolve_settings(ServerSpec(port=9000), UpOptions(flow="f.yml", ui_port=0))
    >>> settings.port, settings.ui_port, settings.url(9000, "/api")
    (9000, None, 'http://127.0.0.1:9000/api')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.spec import ServerSpec
from .bind import url_for


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


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    base_path: str
    ui_port: int | None
    drain_timeout: float

    def url(self, port: int, path: str = "") -> str:
        return url_for(self.host, port, path)


def resolve_settings(server: ServerSpec, options: UpOptions) -> Settings:
    """The flow's `server:` section, overridden by the options."""
    ui_port = server.ui_port
    if options.ui_port is not None:
        ui_port = options.ui_port or None  # --ui-port 0 turns it off
    return Settings(
        host=options.host or server.host,
        port=server.port if options.port is None else options.port,
        base_path=server.base_path,
        ui_port=ui_port,
        drain_timeout=server.drain_timeout,
    )


__all__ = ["Settings", "UpOptions", "resolve_settings"]
