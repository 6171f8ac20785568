"""Reading what `flowctl up` (or `run`) printed: its console lines are
``HH:MM:SS SOURCE | message`` (SOURCE is ``flowctl`` or a node id, padded), see
server/console.py. ``messages(text, "flowctl")`` gives the messages of one source, in order.

    >>> messages("12:00:01 flowctl | serving x\\n12:00:02 llm     | ready (1.0s)\\n", "llm")
    ['ready (1.0s)']
"""

from __future__ import annotations

import re

LINE = re.compile(r"^(?:\d\d:\d\d:\d\d )?(?P<source>\S+) *\| (?P<message>.*)$")


def messages(text: str, source: str = "flowctl") -> list[str]:
    found = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match and match["source"] == source:
            found.append(match["message"])
    return found


__all__ = ["LINE", "messages"]
