"""The restart decision is a pure function: every branch checked without starting a process."""

from __future__ import annotations

import pytest

from flowctl.nodes.restart import Decision, RestartSpec, decide


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarts"),
    [("never", 1, False), ("never", 0, False), ("on-failure", 0, False), ("on-failure", 3, True), ("on-failure", -9, True), ("always", 0, True)],
)
def test_the_policy_decides_whether_an_exit_is_restarted(policy: str, exit_code: int, restarts: bool) -> None:
    assert decide(RestartSpec(policy=policy), failures=0, exit_code=exit_code, uptime=1.0).restart is restarts  # type: ignore[arg-type]


def test_backoff_doubles_in_a_row_up_to_its_cap_then_gives_up() -> None:
    policy = RestartSpec(max_restarts=5, backoff=1.0, max_backoff=5.0)
    delays = []
    failures = 0
    while True:
        decision = decide(policy, failures=failures, exit_code=1, uptime=0.0)
        if not decision.restart:
            break
        delays.append(decision.delay)
        failures = decision.failures
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert decision == Decision(restart=False, failures=5, gave_up=True)


def test_a_process_that_stayed_up_long_enough_has_its_failures_forgotten() -> None:
    policy = RestartSpec(max_restarts=2, backoff=1.0, reset_after=30.0)
    assert decide(policy, failures=2, exit_code=1, uptime=29.0).gave_up
    assert decide(policy, failures=2, exit_code=1, uptime=30.0) == Decision(restart=True, delay=1.0, failures=1)
