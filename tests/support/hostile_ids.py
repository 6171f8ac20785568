"""Node ids that break a drawing made carelessly: ids that collide once made safe (`srv-a`,
`srv_a`), and ids holding mermaid's or dot's own syntax (quotes, brackets, pipes, `#`,
backslashes, `end`, `-->`, tabs). `hostile_flow_text()` chains them with `needs:` (each node
needs the one before), as http-stream nodes that are only drawn, never run."""

from __future__ import annotations

import json

HOSTILE_IDS = [
    "srv-a", "srv_a", "srv.a", "srv a", "n_srv_a", "n_srv_a_2", "srv_a_2",
    'say "hi"', "a|b", "x[y]", "{c}", "<b>bold</b>", "#35;", "a#b", "&amp;",
    "end", "x --> y", "semi;colon", "%% comment", "back\\slash", "trailing\\", "new\\nline",
    "é-ü", "tab\there", "*em* _em_", "`code`", "[x](http://e)", "!bang", "- li", "1. one",
    "# h", "---", "> q", "www.example.com", "a@b.co", "1) two", "+ plus", "===", "",
]


def hostile_flow_text() -> str:
    nodes = "".join(
        f"  {json.dumps(node_id)}:\n    type: http-stream\n    url: \"http://127.0.0.1:9/x\"\n"
        + (f"    needs: [{json.dumps(HOSTILE_IDS[i - 1])}]\n" if i else "")
        for i, node_id in enumerate(HOSTILE_IDS)
    )
    return f"nodes:\n{nodes}workflows:\n  w:\n    output: {json.dumps(HOSTILE_IDS[-1])}\n"
