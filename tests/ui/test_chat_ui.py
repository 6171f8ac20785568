"""The web UI as people who keep a chat window open use it, in a real headless Chromium:
a multi-turn chat that sends the whole conversation as `messages`, replies rendered as
Markdown (and nothing in a reply becomes markup of the page), the runs of the session, a
live log pane per service, and a layout that holds at phone width (420 px)."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator

import httpx
import pytest
from support.fake import fake_vllm_argv
from support.flowctl_up import UpHandle, fake_flow_yaml, start_up
from support.flows import chat_nodes, chat_url, default_flow_over_fake, server_node
from support.procs import free_port

PHONE = {"width": 420, "height": 900}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpHandle]:
    """The fake flow whose chat workflow takes the conversation: `messages` is the request's
    whole message list."""
    handle = start_up(fake_flow_yaml(free_port(), tokens=8, messages="${input.messages as list}"), tmp_path_factory.mktemp("chat-ui"))
    yield handle
    handle.stop()


@pytest.fixture
def context(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    yield context
    context.close()


def open_page(context, up: UpHandle, workflow: str = "chat", viewport: dict[str, int] | None = None):  # type: ignore[no-untyped-def]
    page = context.new_page()
    if viewport:
        page.set_viewport_size(viewport)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(up.ui + "/#/workflows/" + workflow)
    page.wait_for_selector(f"#workflows a[data-workflow={workflow}][aria-current=page]")
    page.errors = errors
    return page


def send(page, text: str) -> str:  # type: ignore[no-untyped-def]
    """Type a message, press Enter, wait for the reply to end; the reply bubble's text."""
    before = page.locator("#conversation li[data-role=assistant]").count()
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    reply = page.locator("#conversation li[data-role=assistant]").nth(before)
    reply.wait_for()
    page.wait_for_function(f"document.querySelectorAll('#conversation li[data-role=assistant]')[{before}].dataset.status !== 'streaming'", timeout=10_000)
    assert reply.get_attribute("data-status") == "succeeded", reply.inner_text()
    return reply.locator(".content").inner_text()


def test_a_chat_sends_the_whole_conversation(context, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    page = open_page(context, up)
    assert page.get_attribute("#workflow", "data-mode") == "chat"
    assert page.is_hidden("#output-box") and page.is_visible("#chat-input")
    assert page.query_selector("#input-messages") is None, "the conversation is the messages input, not a field"
    assert send(page, "echo: hello there") == "hello there"
    # the fake answers `roles:` with the role of every message it was sent
    assert send(page, "roles: please") == "user assistant user"
    assert send(page, "roles: again") == "user assistant user assistant user"
    # a reload keeps the conversation (sessionStorage) and goes on from it
    page.reload()
    page.wait_for_selector("#conversation li[data-role=assistant]")
    assert page.locator("#conversation li.turn").count() == 6
    assert send(page, "roles:") == "user assistant user assistant user assistant user"
    # a new chat starts from nothing
    page.click("#new-chat")
    assert page.locator("#conversation li").count() == 0
    assert send(page, "roles:") == "user"
    assert page.errors == []


def test_a_failed_turn_is_not_sent_again(context, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    page = open_page(context, up)
    page.click("#new-chat")
    assert send(page, "echo: first") == "first"
    # the fake fails this one (x-fake-fail-status from the form's fail_status field)
    page.click("#settings > summary")
    page.fill("#input-fail_status", "500")
    page.fill("#chat-input", "echo: this one fails")
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#conversation li[data-role=assistant][data-status=failed]", timeout=10_000)
    assert page.get_attribute("#conversation li[data-role=user]:nth-last-child(2)", "data-status") == "not-sent"
    assert page.input_value("#chat-input") == "echo: this one fails", "the question is back in the box"
    page.fill("#input-fail_status", "")
    # refused before it ran (422 naming the field): the same, and the field is marked
    page.fill("#chat-input", "echo: refused")
    page.fill("#input-temperature", "hot")
    page.press("#chat-input", "Enter")
    page.wait_for_selector(".field.invalid[data-field=temperature]")
    assert page.input_value("#chat-input") == "echo: refused"
    assert page.locator("#conversation li[data-role=assistant][data-status=failed]").count() == 2
    page.fill("#input-temperature", "")
    page.fill("#chat-input", "")
    assert send(page, "roles:") == "user assistant user", "the failed turns were left out"


XSS = (
    "echo: **bold** and `code` <img src=x onerror=window.pwned=1> <script>window.pwned=2</script>"
    " [bad](javascript:window.pwned=3) ![pixel](http://tracker.invalid/p.png?secret=1) [good](http://127.0.0.1:9/x)"
    ' <a href="http://127.0.0.1:9/" onclick="window.pwned=4">raw</a>'
)


def test_replies_are_markdown_and_nothing_in_them_is_markup(context, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    elsewhere: list[str] = []
    context.route("http://tracker.invalid/**", lambda route: (elsewhere.append(route.request.url), route.abort()))
    page = open_page(context, up)
    page.click("#new-chat")
    page.fill("#chat-input", XSS + "\n\n```\nprint('a block')\n```\n\n- one\n- two")
    page.press("#chat-input", "Enter")
    reply = page.locator("#conversation li[data-role=assistant]").last
    page.wait_for_selector("#conversation li[data-role=assistant][data-status=succeeded]", timeout=10_000)
    content = reply.locator(".content")
    assert content.locator("strong").inner_text() == "bold"
    assert content.locator("p code").first.inner_text() == "code"
    assert content.locator("pre code").inner_text().strip() == "print('a block')"
    assert content.locator("li").all_inner_texts() == ["one", "two"]
    # HTML written in the reply is text: nothing became an element, nothing ran
    tags = content.evaluate("el => [...el.querySelectorAll('*')].map(e => e.tagName.toLowerCase())")
    assert set(tags) <= {"p", "strong", "code", "a", "pre", "ul", "li", "br"}, tags
    handlers = content.evaluate("el => [...el.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'))")
    assert handlers == []
    text = content.inner_text()
    assert "<img src=x onerror=window.pwned=1>" in text and "<script>" in text and '<a href="http://127.0.0.1:9/"' in text
    assert page.evaluate("window.pwned") is None
    # links: no javascript: URL; the image is a link, not loaded; others open in a new tab
    hrefs = content.locator("a").evaluate_all("as => as.map(a => [a.textContent, a.getAttribute('href'), a.target, a.rel])")
    by_text = {t: (href, target, rel) for t, href, target, rel in hrefs}
    assert not (by_text["bad"][0] or "").lower().startswith("javascript"), hrefs
    assert by_text["image: pixel"][0] == "http://tracker.invalid/p.png?secret=1"
    assert by_text["good"] == ("http://127.0.0.1:9/x", "_blank", "noopener noreferrer")
    assert elsewhere == [], "the image was fetched"
    content.locator("a", has_text="bad").click()
    assert page.evaluate("window.pwned") is None
    assert page.errors == []


def test_the_form_output_is_markdown_too(context, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    page = open_page(context, up, "complete")
    assert page.get_attribute("#workflow", "data-mode") == "form"
    page.fill("#input-prompt", "echo: a **strong** answer <b>not bold</b>")
    page.click("#run")
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
    assert page.inner_text("#output strong") == "strong"
    assert page.query_selector("#output b") is None
    assert page.inner_text("#output") == "a strong answer <b>not bold</b>"


def test_the_runs_of_the_session_are_listed(context, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    page = open_page(context, up, "complete")
    page.fill("#input-prompt", "echo: first answer")
    page.click("#run")
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
    page.fill("#input-prompt", "echo: second")
    page.fill("#input-max_tokens", "lots")  # refused (422): a failed run
    page.click("#run")
    page.wait_for_selector("#history li[data-status=failed]", timeout=10_000)
    page.fill("#input-max_tokens", "")
    items = page.locator("#history > li")
    assert items.count() == 2
    newest, oldest = items.nth(0), items.nth(1)
    assert newest.locator(".what").inner_text() == "complete" and "failed" in newest.locator(".how").inner_text()
    assert oldest.get_attribute("data-status") == "succeeded" and " ms" in oldest.locator(".how").inner_text()
    oldest.locator("summary").click()
    assert json.loads(oldest.locator(".entry-input .plain").inner_text()) == {"prompt": "echo: first answer"}
    assert oldest.locator(".entry-output").inner_text().endswith("first answer")
    run_id = oldest.get_attribute("data-run")
    with up.client(timeout=5) as client:
        assert client.get(f"/runs/{run_id}").json()["status"] == "succeeded"
    newest.locator("summary").click()
    assert "max_tokens" in newest.locator(".entry-error").inner_text()
    # kept over a reload (this tab's session), gone in another context (another session)
    page.reload()
    page.wait_for_selector("#history > li")
    assert page.locator("#history > li").count() == 2
    page.click("#history-clear")
    assert page.locator("#history > li").count() == 0


def test_a_service_log_follows_in_a_pane(browser, flowctl_up) -> None:  # type: ignore[no-untyped-def]
    """`GET {base}/services/{node}/logs?tail=N&follow=1`, opened from the service's entry: the
    last lines, then each new one as the server writes it. A line is text, whatever it holds."""
    port = free_port()
    loud = "version: 1\nname: loud\nnodes:\n" + server_node("llm", fake_vllm_argv(port), port) + chat_nodes(chat_url(port), needs="llm")
    up = flowctl_up(loud)  # the fake logs every request it gets: a new line per request
    context = browser.new_context()
    try:
        page = open_page(context, up, "reply")  # the loud flow's one workflow: its sse-sink's id
        page.wait_for_selector("#services li[data-node=llm] button.logs")
        page.click("#services li[data-node=llm] button.logs")
        page.wait_for_selector("#logs[data-state=following]")
        assert page.text_content("#log-node") == "llm"
        lines = page.locator("#log-lines div")
        page.wait_for_function(f"[...document.querySelectorAll('#log-lines div')].some(d => d.textContent.includes('fake-vllm listening on http://127.0.0.1:{port}'))")
        before = lines.count()
        # a request whose target is markup, straight to the server: its log line is text
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /<b>bold</b><img src=x onerror=window.pwned=1> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sock.recv(4096)
        with up.client(timeout=10) as client:
            client.post("/workflows/reply/runs", json={"input": {"prompt": "hi"}}).raise_for_status()
        page.wait_for_function("[...document.querySelectorAll('#log-lines div')].some(d => d.textContent.includes('POST /v1/chat/completions'))", timeout=10_000)
        assert lines.count() > before
        assert any("GET /<b>bold</b><img src=x onerror=window.pwned=1>" in line for line in lines.all_inner_texts())
        assert page.locator("#log-lines b, #log-lines img").count() == 0 and page.evaluate("window.pwned") is None
        # flowctl's own log, from the same pane
        page.click("#own-log button.logs")
        page.wait_for_function("document.querySelector('#log-node').textContent === 'flowctl' && [...document.querySelectorAll('#log-lines div')].some(d => d.textContent.startsWith('serving '))")
        page.click("#log-close")
        assert page.is_hidden("#logs")
        assert page.errors == []
    finally:
        context.close()


# -- phone width --------------------------------------------------------------------------------


def png_width(png: bytes) -> int:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", png[16:20])[0]


def assert_fits(page, selectors: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Nothing is wider than the window: no horizontal scroll, and each element's box (when
    shown) lies inside the viewport; a full-page screenshot is as wide as the window."""
    width = page.evaluate("window.innerWidth")
    assert width == PHONE["width"]
    scroll = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    wide = page.evaluate(f"[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > {width} + 0.5).map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 12)")
    assert scroll <= width, f"the page scrolls sideways: {scroll} > {width}; too wide: {wide}"
    for selector in selectors:
        for box in page.locator(selector).evaluate_all("els => els.filter(e => e.offsetParent !== null).map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right]; })"):
            left, right = box
            assert left >= 0 and right <= width + 0.5, f"{selector} spans {left}..{right} of {width}"
    assert png_width(page.screenshot(full_page=True)) == width


def test_the_chat_fits_a_phone(context, up: UpHandle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page = open_page(context, up, viewport=PHONE)
    page.click("#new-chat")
    long_word = "x" * 300
    send(page, "echo: a very long word " + long_word + "\n\n```\n" + "y = " + "1 + " * 80 + "1\n```\n\n| a | b |\n|---|---|\n| " + "z" * 120 + " | w |")
    page.wait_for_selector("#services li[data-node=llm] button.logs")
    page.click("#services li[data-node=llm] button.logs")
    page.wait_for_selector("#logs:not([hidden])")
    page.wait_for_selector("#graph svg", timeout=15_000)
    assert_fits(page, ["header", "header *", "#nav", "#workflows a", "#services li", "#workflow", "#conversation li", "#chat-input", ".buttons button", "#graph", "#logs", "#side-history"])
    # the parts are one above another, the workflow first after the navigation
    order = page.evaluate("['#nav', '#workflow', '#logs', '#side-history'].map(s => document.querySelector(s).getBoundingClientRect().top)")
    assert order == sorted(order), order
    page.screenshot(path=str(tmp_path / "chat-420.png"), full_page=True)


def test_the_form_fits_a_phone(context, up: UpHandle) -> None:  # type: ignore[no-untyped-def]
    page = open_page(context, up, "complete", viewport=PHONE)
    page.fill("#input-prompt", "echo: " + "http://127.0.0.1/" + "a" * 200)
    page.click("#run")
    page.wait_for_selector("#run-status[data-status=succeeded]", timeout=10_000)
    page.wait_for_selector("#graph svg", timeout=15_000)
    page.locator("#history > li summary").first.click()
    assert_fits(page, ["header", "#nav", "#workflow", ".field", ".field input", ".field textarea", "#output", "#graph", "#history li"])


def test_the_default_flow_is_a_chat_with_its_system_message(browser, flowctl_up) -> None:  # type: ignore[no-untyped-def]
    """flows/local_chat.yml (its server swapped for the fake): a chat; its `system` input is
    the conversation's first message, its default unless filled in under Settings."""
    port = free_port()
    up = flowctl_up(default_flow_over_fake(port))
    context = browser.new_context()
    try:
        page = open_page(context, up)
        assert page.get_attribute("#workflow", "data-mode") == "chat"
        assert page.query_selector("#input-prompt") is None and page.query_selector("#input-system") is not None
        assert send(page, "roles:") == "system user"
        first = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()["last_request"]["messages"][0]
        assert first == {"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}
        page.click("#settings > summary")
        page.fill("#input-system", "Be brief.")
        assert send(page, "roles:") == "system user assistant user"
        sent = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).json()["last_request"]["messages"]
        assert sent[0] == {"role": "system", "content": "Be brief."} and [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    finally:
        context.close()
