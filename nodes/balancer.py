"""Balancing runs over a service's replicas: who gets the next request.

A `ReplicaPool` belongs to a process-start node (one member for a plain node, one per replica
for `replicas: N`); its members are `Endpoint`s that read their URL and readiness live from
the replica that owns them, so replicas coming and going need no reload. An http-stream
node with `service:` asks the pool for a member per attempt:

- **least in-flight streams** among the ready members (counted from the moment a member is
  picked to the moment the run's answer is closed), ties broken by rotation, so equal
  members take turns;
- a member whose connection could not be made is **cooled down** for `COOLDOWN` seconds:
  skipped while any other ready member is not cooling;
- a run that could not reach its member, or lost the connection before the first byte of
  the answer, is sent to another member (`avoid`); after the first byte nothing is sent
  twice (http_stream.py).

    >>> a, b = Endpoint("llm.0", lambda: "http://a", lambda: True), Endpoint("llm.1", lambda: "http://b", lambda: True)
    >>> pool = ReplicaPool("llm", lambda: [a, b])
    >>> first = pool.pick(); second = pool.pick()
    >>> (first.name, second.name, first.in_flight)
    ('llm.0', 'llm.1', 1)
    >>> first.release(); pool.pick().name       # llm.0 has no stream now, llm.1 has one
    'llm.0'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

#: seconds a member that refused a connection is passed over
COOLDOWN = 5.0


@dataclass(eq=False)
class Endpoint:
    """One member of a pool: a replica's name, live URL and readiness, and its counters."""

    name: str
    #: the replica's URL now (None: it has none, being down or not placed)
    url_now: Callable[[], str | None]
    #: True while the replica is ready to serve
    ready_now: Callable[[], bool]
    #: streams picked for it and not closed yet
    in_flight: int = 0
    #: requests sent to it (every attempt)
    requests: int = 0
    #: attempts that failed on it: no connection, a non-2xx answer, a stream broken off
    failures: int = 0
    #: monotonic time until which it is passed over (after a connection it refused)
    cooldown_until: float = 0.0
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def url(self) -> str | None:
        return self.url_now()

    @property
    def ready(self) -> bool:
        return self.ready_now() and self.url_now() is not None

    @property
    def cooling(self) -> bool:
        return self.cooldown_until > self._clock()

    def release(self, *, failed: bool = False) -> None:
        """The stream picked for it is over (`failed`: it failed on this member)."""
        self.in_flight = max(0, self.in_flight - 1)
        if failed:
            self.failures += 1

    def cool_down(self, seconds: float = COOLDOWN) -> None:
        self.cooldown_until = self._clock() + seconds


class ReplicaPool:
    """The members of one service, and the choice among them."""

    def __init__(self, service: str, members: Callable[[], Sequence[Endpoint]]) -> None:
        self.service = service
        self._members = members
        self._turn = 0

    @property
    def members(self) -> Sequence[Endpoint]:
        return self._members()

    def live(self) -> list[Endpoint]:
        return [member for member in self._members() if member.ready]

    def pick(self, avoid: Collection[str] = ()) -> Endpoint | None:
        """The member for the next attempt (its `in_flight` counted already), or None when
        none is ready. Ready members not in `avoid` and not cooling first; then those not in
        `avoid`; then any ready one (a lone replica is retried rather than refused)."""
        members = self._members()
        ready = [(index, member) for index, member in enumerate(members) if member.ready]
        if not ready:
            return None
        fresh = [(i, m) for i, m in ready if m.name not in avoid]
        for tier in ([(i, m) for i, m in fresh if not m.cooling], fresh, [(i, m) for i, m in ready if not m.cooling], ready):
            if tier:
                break
        count = len(members)
        index, chosen = min(tier, key=lambda pair: (pair[1].in_flight, (pair[0] - self._turn) % count))
        self._turn = index + 1
        chosen.in_flight += 1
        chosen.requests += 1
        return chosen

    def has_other(self, avoid: Collection[str]) -> bool:
        """True when a ready member not in `avoid` is left (a failover has somewhere to go)."""
        return any(member.ready and member.name not in avoid for member in self._members())


__all__ = ["COOLDOWN", "Endpoint", "ReplicaPool"]
