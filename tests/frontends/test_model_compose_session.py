"""Sticky routing and the rest of model-compose that flowctl refuses with a fix.

A random-router's `session:` lowers onto a switch's `sticky:` draw, hashed exactly as
model-compose hashes it, so a session lands on the same job under either engine; the
session is the `session_id` a client sends with the run (`${context.session_id}`, natively
`${run.session}`). model-compose's canary-rollout example runs through `flowctl up`.
Interrupts on other than component jobs and the queue controller are refused at their line,
each naming what to use instead."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest
from support.dag import run_flow
from support.model_compose import assert_error_at, spec_of

#: model-compose's examples/job-flow/canary-rollout (commit 47d40dd), without its controller
CANARY = """\
workflows:
  - id: chat
    title: Canary Rollout (Session-Sticky)
    jobs:
      - id: pick-variant
        type: random-router
        mode: weighted
        session: ${context.session_id}
        routings:
          - { to: stable, weight: 95 }
          - { to: canary, weight: 5 }

      - id: stable
        component: respond
        input:
          variant: stable
          message: ${input.message}
        output: ${output}

      - id: canary
        component: respond
        input:
          variant: canary
          message: ${input.message}
        output: ${output}

components:
  - id: respond
    type: shell
    action:
      command: [ "echo", "[${input.variant}] you said: ${input.message}" ]
      output:
        variant: ${input.variant}
        reply: ${result.stdout}
"""


def model_compose_pick(salt: str, session: str, routes: list[tuple[str, float]]) -> str:
    """model-compose 0.4.120's RandomRoutingSelector._pick_hashed, restated."""
    def score(target: str, weight: float) -> float:
        digest = hashlib.sha256(f"{salt}\x00{session}\x00{target}".encode()).digest()
        return -math.log((int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)) / weight

    return min(routes, key=lambda route: score(*route))[0]


STICKY = """
nodes:
  pick:
    type: switch
    mode: random
    sticky: ${input.user | null}
    cases:
      - {to: a, weight: 1, name: a}
      - {to: b, weight: 1, name: b}
  a: {type: value, value: a}
  b: {type: value, value: b}
  out: {type: value, value: "${nodes.a.output | ${nodes.b.output}}"}
workflows:
  w: {output: out}
"""


async def test_a_sticky_switch_draws_the_same_case_for_the_same_value() -> None:
    picks: dict[str, set[str]] = {}
    for user in (f"user-{n}" for n in range(16)):
        for _ in range(3):
            chunks, _ = await run_flow(STICKY, {"user": user})
            picks.setdefault(user, set()).add(chunks[0])
    assert all(len(seen) == 1 for seen in picks.values()), picks
    assert {next(iter(seen)) for seen in picks.values()} == {"a", "b"}  # and it does spread
    for user, seen in picks.items():
        assert seen == {model_compose_pick("pick", user, [("a", 1), ("b", 1)])}


def test_sticky_goes_with_random_mode_only() -> None:
    flow = STICKY.replace("    mode: random\n", "").replace("- {to: a, weight: 1, name: a}", "- {to: a, equals: x}").replace(
        "- {to: b, weight: 1, name: b}", "- {to: b, equals: y}")
    assert_error_at(flow, "type: switch", "`sticky:` and `salt:` go with `mode: random`")


def test_a_session_router_lowers_to_a_sticky_switch_salted_as_model_compose_does() -> None:
    pick = spec_of(CANARY).nodes["pick-variant"]
    assert pick.mode == "random" and pick.sticky == "${run.session}" and pick.salt == "chat:pick-variant"
    assert [(case.name, case.weight) for case in pick.cases] == [("stable", 95.0), ("canary", 5.0)]


def test_the_canary_example_keeps_each_session_on_its_variant(flowctl_up: Any) -> None:
    up = flowctl_up("controller:\n  type: http-server\n  base_path: /api\n" + CANARY, timeout=60.0)
    sessions = [f"s-{n}" for n in range(40)]
    expected = {s: model_compose_pick("chat:pick-variant", s, [("stable", 95), ("canary", 5)]) for s in sessions}
    assert "canary" in expected.values()  # 40 sessions at 5%: the hash puts some there
    with up.client(timeout=30.0) as api:
        for session in sessions:
            for _ in range(2):
                r = api.post("/workflows/runs", json={"workflow_id": "chat", "input": {"message": "hi"}, "session_id": session, "output_only": True})
                assert r.status_code == 200, r.text
                assert r.json()["variant"] == expected[session], session
        r = api.post("/workflows/runs", json={"workflow_id": "chat", "input": {"message": "hi"}, "session_id": 7})
        assert r.status_code == 422 and "session_id" in r.text


REFUSED = [
    ("workflow:\n  jobs:\n    - {id: wait, type: delay, duration: 1, interrupt: {before: true}}\n    - {id: run, component: c, depends_on: [wait]}\n",
     "interrupt:", "key 'interrupt'", "component jobs only"),
    ("controller:\n  adapter: {type: queue-subscriber, driver: redis}\nworkflow:\n  job: {component: c}\n", "queue-subscriber",
     "adapter type 'queue-subscriber' is not served", "POST each task"),
]


@pytest.mark.parametrize(("head", "marker", "message", "hint"), REFUSED)
def test_what_flowctl_does_not_do_is_refused_at_its_line_with_the_alternative(head: str, marker: str, message: str, hint: str) -> None:
    flow = head + "component:\n  id: c\n  type: shell\n  action: {command: [echo, hi]}\n"
    assert_error_at(flow, marker, message, hint)
