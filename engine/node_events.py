"""What a run tells its watchers about its nodes: started, finished, failed, skipped (and a
few steps in between), each with when it happened.

A client asks for them per run (`?events=nodes`, see docs/dag.md); they then come in the
run's stream between the output chunks, as `NodeEvent` objects from `run_workflow` and as
`event: node` in SSE:

    >>> NodeEvent("draft_a", "finished", at_ms=1103.2, elapsed_ms=1101.0).as_dict()
    {'node': 'draft_a', 'state': 'finished', 'at_ms': 1103.2, 'elapsed_ms': 1101.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

STARTED: Final = "started"
FINISHED: Final = "finished"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
#: a node that was running when the run stopped (another branch failed, the client left)
CANCELLED: Final = "cancelled"
#: steps reported by a node while it runs (`RunContext.report`): a retry, a map's progress
RETRYING: Final = "retrying"
PROGRESS: Final = "progress"
#: a pause node waits for a person's answer (`message`, `metadata`, `expires_at`)
PAUSED: Final = "paused"

#: states after which a node does nothing more in this run
FINAL_STATES: Final = frozenset({FINISHED, FAILED, SKIPPED, CANCELLED})


@dataclass(frozen=True, slots=True)
class NodeEvent:
    node: str
    state: str
    #: milliseconds since the run began
    at_ms: float
    #: for a final state of a node that started: how long it ran
    elapsed_ms: float | None = None
    #: skipped: why; failed / cancelled: the error
    reason: str | None = None
    #: anything else the state carries (`attempt` of a retry, `fallback` taken, ...)
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "state": self.state, "at_ms": self.at_ms}
        if self.elapsed_ms is not None:
            out["elapsed_ms"] = self.elapsed_ms
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(self.details)
        return out


def describe(event: Mapping[str, Any]) -> str:
    """One line for a person (`flowctl run -v`), from an event's `as_dict()` or its SSE JSON.

    >>> describe({"node": "draft_a", "state": "finished", "at_ms": 1103.2, "elapsed_ms": 1101.0})
    '  1103.2 ms  draft_a finished after 1101.0 ms'
    >>> describe({"node": "extra", "state": "skipped", "at_ms": 0.4, "reason": "`when` does not hold"})
    '     0.4 ms  extra skipped: `when` does not hold'
    """
    state = event.get("state")
    line = f"{event.get('at_ms', 0):8.1f} ms  {event.get('node')} {state}"
    if state == RETRYING:
        line += f" (attempt {event.get('attempt')} in {event.get('wait_ms')} ms)"
    elif state == PAUSED and event.get("message"):
        line += f": {event['message']}"
    elif state == PROGRESS:
        line += f" {event.get('done')}/{event.get('total')}"
    if event.get("elapsed_ms") is not None:
        line += f" after {event['elapsed_ms']} ms"
    reason = event.get("reason") or event.get("error")
    if reason:
        line += f": {reason}"
    return line


__all__ = ["CANCELLED", "FAILED", "FINAL_STATES", "FINISHED", "PAUSED", "PROGRESS", "RETRYING", "SKIPPED", "STARTED", "NodeEvent", "describe"]
