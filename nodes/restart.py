"""When a managed process that died is started again: the restart policy, and the decision as
a pure function of (policy, restarts in a row, exit code, how long it was up), so it can be
tested without starting a process (process-compose's `isRestartable` / `getBackoff`).

    >>> policy = RestartSpec(policy="on-failure", max_restarts=2, backoff=1, reset_after=60)
    >>> decide(policy, failures=0, exit_code=1, uptime=5)
    Decision(restart=True, delay=1.0, failures=1, gave_up=False)
    >>> decide(policy, failures=1, exit_code=1, uptime=0).delay     # doubled each time in a row
    2.0
    >>> decide(policy, failures=2, exit_code=1, uptime=0).gave_up   # max_restarts reached
    True
    >>> decide(policy, failures=2, exit_code=1, uptime=90).failures # up long enough: forgotten
    1
    >>> decide(policy, failures=0, exit_code=0, uptime=5).restart   # a clean exit is no failure
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RestartPolicy = Literal["never", "on-failure", "always"]


class RestartSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: `on-failure` restarts after a non-zero exit or a signal, `always` after any exit
    policy: RestartPolicy = "on-failure"
    #: restarts in a row before giving up (the count resets once a process stays up `reset_after`)
    max_restarts: int = Field(default=5, ge=0)
    #: first backoff in seconds, doubled after each restart in a row
    backoff: float = Field(default=1.0, ge=0)
    max_backoff: float = Field(default=30.0, ge=0)
    #: seconds a process must stay up for its failures to be forgotten
    reset_after: float = Field(default=60.0, ge=0)


def restart_schema(schema: dict[str, Any]) -> None:
    """JSON Schema of a `restart:` field: `restart: on-failure` is short for
    `restart: {policy: on-failure}`."""
    ref = {key: value for key, value in schema.items() if key not in ("default", "description", "title")}
    for key in ref:
        del schema[key]
    schema["anyOf"] = [ref, {"enum": ["never", "on-failure", "always"], "type": "string"}]


@dataclass(frozen=True)
class Decision:
    #: start the process again (after `delay` seconds)
    restart: bool
    delay: float = 0.0
    #: restarts in a row, this one included
    failures: int = 0
    #: the policy wants a restart, but `max_restarts` in a row were spent
    gave_up: bool = False


def decide(policy: RestartSpec, *, failures: int, exit_code: int | None, uptime: float) -> Decision:
    """What to do after a process exited with `exit_code` (negative: killed by a signal) after
    `uptime` seconds, `failures` restarts in a row before it. A restart that did not get
    ready counts as a process that exited at once with the same code."""
    if policy.policy == "never" or (policy.policy == "on-failure" and exit_code == 0):
        return Decision(restart=False, failures=failures)
    if uptime >= policy.reset_after:
        failures = 0
    if failures >= policy.max_restarts:
        return Decision(restart=False, failures=failures, gave_up=True)
    delay = min(policy.backoff * (2**failures), policy.max_backoff)
    return Decision(restart=True, delay=delay, failures=failures + 1)


__all__ = ["Decision", "RestartPolicy", "RestartSpec", "decide", "restart_schema"]
