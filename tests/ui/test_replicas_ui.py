"""The web UI's services list shows each replica of a service under it: its state (a replica
killed shows as down, the service as degraded) and a log button opening that replica's log."""

from __future__ import annotations

import os
import signal

from replicas.replicas_support import replica_rows, replicas_flow


def test_each_replica_has_a_row_with_its_state_and_its_log(browser, flowctl_up, mark) -> None:  # type: ignore[no-untyped-def]
    up = flowctl_up(replicas_flow(2, mark, restart="on-failure", backoff=30))
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(up.ui + "/?poll=100")
        page.wait_for_selector("#services li[data-node=llm][data-state=ready]")
        page.wait_for_selector("#services li.replica[data-node='llm.0'][data-state=ready]")
        page.wait_for_selector("#services li.replica[data-node='llm.1'][data-state=ready]")

        os.kill(replica_rows(up.client().get("/ready").json())[1]["pid"], signal.SIGKILL)
        page.wait_for_selector("#services li[data-node=llm][data-state=degraded]", timeout=10_000)
        page.wait_for_selector("#services li.replica[data-node='llm.1'][data-state=restarting]", timeout=10_000)
        assert "SIGKILL" in page.text_content("#services li.replica[data-node='llm.1'] .reason")

        page.click("#services li.replica[data-node='llm.0'] button.logs")
        page.wait_for_function("document.querySelector('#logs').textContent.includes('fake-vllm listening')", timeout=10_000)
    finally:
        context.close()
    assert not errors, errors
