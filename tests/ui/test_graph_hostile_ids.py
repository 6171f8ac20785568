"""The mermaid text `flowctl graph` writes for hostile node ids (tests/engine/
test_export_hostile_ids.py), rendered by the vendored mermaid in the real browser as the web
UI renders it: it parses, every node is drawn once, and each shows its own id as text."""

from __future__ import annotations

import json
import re

from support.hostile_ids import HOSTILE_IDS, hostile_flow_text

from flowctl.engine.export import to_mermaid
from flowctl.engine.flow import load_flow_text
from flowctl.server.ui import STATIC_DIR


def test_mermaid_draws_every_hostile_id_as_its_text(browser) -> None:  # type: ignore[no-untyped-def]
    text = to_mermaid(load_flow_text(hostile_flow_text()))
    ids = json.loads(re.search(r"%% flowctl-ids (\{.*\})", text).group(1))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content("<!doctype html><html><body><div id='graph'></div></body></html>")
        page.add_script_tag(path=str(STATIC_DIR / "mermaid.min.js"))
        page.evaluate("mermaid.initialize({startOnLoad: false, securityLevel: 'strict'})")
        drawn = page.evaluate(
            """async (text) => {
                const { svg } = await mermaid.render('hostile', text);
                const box = document.getElementById('graph');
                box.innerHTML = svg;
                return [...box.querySelectorAll('g.node')].map(g => [g.id, g.querySelector('.nodeLabel, foreignObject, text').textContent]);
            }""",
            text,
        )
        assert page.evaluate("window.pwned") is None
        assert page.locator("#graph b, #graph script").count() == 0, "a node id became markup"
    finally:
        context.close()
    by_drawing_id = {re.match(r".*flowchart-(\w+?)-\d+$", gid).group(1): label for gid, label in drawn}
    assert len(drawn) == len(HOSTILE_IDS)
    for node_id in HOSTILE_IDS:
        label = by_drawing_id[ids[node_id]]
        assert label.startswith(node_id), (node_id, label)
