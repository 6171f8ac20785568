"""This flowctl's one connection to a Ray cluster, shared by every Ray placement in it.

Ray is imported here on the first join, not before, so that the loopback rule is in place
before Ray reads its settings: Ray rewrites a 127.0.0.1 address to the machine's routable one
and then listens on every interface unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, which is set
for a loopback address. `ray.init` runs in a thread of its own (in the main thread Ray would
take over the SIGTERM `flowctl up` drains on), after a plain TCP check of a `host:port`
address (Ray would retry a dead one for minutes). The last placement to leave shuts Ray
down, if flowctl was the one that joined.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from ...engine.errors import ServiceError

#: the namespace flowctl's actors are named in (`ray list actors --filter namespace=flowctl`)
NAMESPACE = "flowctl"

_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _import_ray(address: str) -> Any:
    if address.rsplit(":", 1)[0] in _LOOPBACK:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # Ray's C++ core would print a stack dump on the SIGTERM `flowctl up` stops on
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    import ray

    return ray


class _Connection:
    """This process's one connection to Ray, shared by every Ray placement in it."""

    def __init__(self) -> None:
        self.users = 0
        self.owned = False  # we called ray.init (else someone else did: leave it to them)
        self.address: str | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self.ray: Any = None

    @property
    def lock(self) -> asyncio.Lock:
        """One lock per event loop (a test, or `flowctl run`, may run several loops in turn)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    async def join(self, address: str | None, node_id: str) -> Any:
        async with self.lock:
            target = address or os.environ.get("RAY_ADDRESS") or "auto"
            ray = _import_ray(target)
            if self.users == 0 and not ray.is_initialized():
                try:
                    await asyncio.to_thread(_reachable, target)
                    await asyncio.to_thread(_init, ray, target)
                except Exception as exc:  # ConnectionError, ValueError, RuntimeError: all mean "no cluster there"
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ServiceError(node_id, f"cannot join the Ray cluster at {target}: {first}", hint="start one (`ray start --head`) or set `placement.address`") from None
                self.owned, self.address = True, target
            elif self.users and address is not None and self.address not in (None, address):
                raise ServiceError(node_id, f"this flowctl is joined to the Ray cluster at {self.address}, not {address}", hint="one flowctl joins one Ray cluster: give every node the same `placement.address`")
            self.users += 1
            self.ray = ray
            return ray

    async def leave(self) -> None:
        async with self.lock:
            self.users -= 1
            if self.users == 0 and self.owned:
                self.owned = False
                await asyncio.to_thread(self.ray.shutdown)


def _reachable(address: str) -> None:
    """Raise ConnectionError at once when nothing listens at a `host:port` address: Ray would
    retry for minutes, printing warnings meanwhile."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5.0):
            pass
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"nothing answers there ({exc})") from None


def _init(ray: Any, address: str) -> None:
    # called in a thread of its own (`asyncio.to_thread`): in the main thread, Ray would take
    # over SIGTERM (elsewhere it logs that it did not, at a level silenced here)
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)


connection = _Connection()


__all__ = ["NAMESPACE", "connection"]
