"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium via playwright):
the form is built from the schema, Run streams text in as it arrives, Cancel stops a run,
the mermaid graph renders as SVG, and the service state shows."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.flowctl_up import UpHandle, fake_flow_yaml, start_up
from support.paths import PYTHON, TESTS_DIR
from support.procs import free_port

ECHO_HTTP = TESTS_DIR / "servers" / "echo_http.py"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpHandle]:
    handle = start_up(fake_flow_yaml(free_port(), tokens=8), tmp_path_factory.mktemp("ui"))
    yield handle
    handle.stop()


@pytest.fixture
def page(browser, up: UpHandle):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(up.ui + "/")
    page.wait_for_selector("#workflows a[data-workflow=chat][aria-current=page]")
    yield page
    context.close()
    assert not errors, errors


def test_run_streams_text_into_the_page(page) -> None:  # type: ignore[no-untyped-def]
    # the form comes from the JSON Schema: prompt (required), temperature (number)...
    assert page.get_attribute("#input-prompt", "required") is not None
    assert page.get_attribute("#input-temperature", "placeholder") == "0.7"
    page.fill("#input-prompt", "echo: streamed into a real browser")
    page.fill("#input-delay_ms", "150")
    page.click("#run")
    # partial text shows while the run goes on
    page.wait_for_function("document.querySelector('#output').textContent.startsWith('streamed into')")
    partial = page.text_content("#output")
    assert partial != "streamed into a real browser"
    assert page.is_enabled("#cancel")
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
    assert page.text_content("#output") == "streamed into a real browser"
    assert page.is_enabled("#run") and not page.is_enabled("#cancel")


def test_cancel_stops_a_run(page) -> None:  # type: ignore[no-untyped-def]
    page.fill("#input-prompt", "long")
    page.fill("#input-tokens", "5000")
    page.fill("#input-delay_ms", "20")
    page.click("#run")
    page.wait_for_function("document.querySelector('#output').textContent.length > 5")
    page.click("#cancel")
    page.wait_for_selector("#run-status[data-status=cancelled]", timeout=10_000)
    assert page.is_enabled("#run")


def test_a_bad_input_is_shown_on_its_field(page) -> None:  # type: ignore[no-untyped-def]
    page.fill("#input-prompt", "x")
    page.fill("#input-temperature", "hot")
    page.click("#run")
    page.wait_for_selector(".field.invalid[data-field=temperature]")
    assert "temperature" in page.text_content(".field[data-field=temperature] .error")


def test_the_graph_renders_as_svg_and_services_show(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#graph svg", timeout=15_000)
    labels = page.text_content("#graph svg")
    assert "chat" in labels and "reply" in labels and "llm" in labels
    page.wait_for_selector("#services li[data-node=llm][data-state=ready]")
    assert page.text_content("#readiness") == "ready"
    assert page.is_hidden("#reload-error")


def test_the_graph_nodes_are_coloured_live_from_node_events(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#graph svg g.node", timeout=15_000)
    page.fill("#input-prompt", "echo: colour me while I stream")
    page.fill("#input-delay_ms", "150")
    page.click("#run")
    # while the reply streams, its nodes are drawn as running...
    page.wait_for_selector("#graph g.node[data-state=started]", timeout=10_000)
    assert page.text_content("#run-status").startswith("running")
    # ...and when it is done, as finished, with their timings in the tooltip
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
    finished = page.eval_on_selector_all("#graph g.node[data-state=finished] title", "els => els.map(e => e.textContent)")
    assert sorted(t.split(":")[0] for t in finished) == ["chat", "reply"], finished
    assert all(" ms" in t for t in finished)


def test_another_workflow_from_the_list(page) -> None:  # type: ignore[no-untyped-def]
    page.click("#workflows a[data-workflow=complete]")
    page.wait_for_selector("#workflows a[data-workflow=complete][aria-current=page]")
    page.wait_for_function("document.querySelector('#wf-title').textContent === 'Complete'")
    page.fill("#input-prompt", "echo: whole answer")
    page.click("#run")
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
    assert page.text_content("#output") == "whole answer"


def test_a_failed_reload_shows_a_banner_until_a_good_save(browser, flowctl_up) -> None:  # type: ignore[no-untyped-def]
    up = flowctl_up(fake_flow_yaml(free_port()), reload=True)
    good = up.flow_path.read_text()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(up.ui + "/?poll=100")
        page.wait_for_selector("#services li[data-node=llm][data-state=ready]")
        assert page.is_hidden("#reload-error")
        up.flow_path.write_text(good.replace("description: test flow", "descriptoin: test flow"))
        page.wait_for_selector("#reload-error:not([hidden])", timeout=10_000)
        banner = page.text_content("#reload-error")
        assert "descriptoin" in banner and "flow.yml:" in banner
        # still serving the old graph meanwhile
        assert page.text_content("#readiness") == "ready"
        up.flow_path.write_text(good)
        page.wait_for_selector("#reload-error[hidden]", state="attached", timeout=10_000)
    finally:
        context.close()


def test_a_service_that_crashed_and_came_back_shows_why(browser, flowctl_up) -> None:  # type: ignore[no-untyped-def]
    """Issue 12: "ready (2 restarts)" hid a model server that SIGSEGVs on every generation.
    Next to the restart count the page shows how the last process went down."""
    up = flowctl_up(fake_flow_yaml(free_port(), restart="on-failure", die_after_tokens=1, die_signal="SIGSEGV"))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(up.ui + "/?poll=100")
        page.wait_for_selector("#services li[data-node=llm][data-state=ready]")
        assert page.query_selector("#services li[data-node=llm] .last-exit") is None, "nothing to tell yet"
        with up.client(timeout=10) as client:
            run = client.post("/workflows/chat/runs", json={"input": {"prompt": "hi"}})
            assert "event: error" in run.text and "SIGSEGV" in run.text, run.text  # the run says it in one line
            page.wait_for_selector("#services li[data-node=llm][data-state=ready] .last-exit", timeout=15_000)
            assert page.text_content("#services li[data-node=llm] .state") == "ready (1 restart)"
            assert page.text_content("#services li[data-node=llm] .last-exit") == "last one was killed by SIGSEGV"
            llm = client.get("/ready").json()["services"]["llm"]
        assert (llm["state"], llm["restarts"], llm["last_exit"], llm["reason"]) == ("ready", 1, "was killed by SIGSEGV", None)
    finally:
        context.close()


def test_a_select_input_is_a_select_box_and_a_media_input_takes_a_file(browser, flowctl_up, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """model-compose's `as select/a,b` and `as image` inputs, as the form shows them."""
    port = free_port()
    flow = f"""\
controller: {{type: http-server, base_path: /api}}
component:
  type: http-server
  port: {port}
  start: [{json.dumps(PYTHON)}, {json.dumps(str(ECHO_HTTP))}, --port, "{port}"]
  action:
    path: /echo
    body:
      size: ${{input.size as select/small,large | large @(description Image size)}}
      photo: ${{input.photo as image/png}}
workflow:
  output: ${{output.echo}}
"""
    up = flowctl_up(flow)
    picture = tmp_path / "dot.png"
    picture.write_bytes(b"\x89PNG fake")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(up.ui + "/")
        page.wait_for_selector("#input-size")
        assert page.evaluate("document.querySelector('#input-size').tagName") == "SELECT"
        assert page.evaluate("[...document.querySelector('#input-size').options].map(o => o.value)") == ["small", "large"]
        assert page.input_value("#input-size") == "large"
        assert "Image size" in page.text_content(".field[data-field=size] label")
        page.select_option("#input-size", "small")
        page.set_input_files(".field[data-field=photo] input[type=file]", str(picture))
        page.wait_for_function("document.querySelector('#input-photo').value.startsWith('data:image/png;base64,')")
        page.click("#run")
        page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
        shown = json.loads(page.text_content("#output"))
        assert shown == {"size": "small", "photo": "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()}
    finally:
        context.close()


def test_the_api_docs_page_renders_offline(browser, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    """`/api/schema` (Swagger UI) with every request off 127.0.0.1 refused: Litestar's page
    loaded its scripts from a CDN and stayed blank offline."""
    context = browser.new_context()
    elsewhere: list[str] = []

    def only_local(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    try:
        context.route("**/*", only_local)
        page = context.new_page()
        page.goto(up.api + "/schema")
        page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        assert "flowctl" in page.text_content(".swagger-ui .info .title")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/workflows/{workflow_id}/runs']")
        assert elsewhere == []
    finally:
        context.close()
