"""Server-sent events, read per the WHATWG rules: `data:` lines gather into one event,
a blank line dispatches it, comment lines (`:`) and other fields are skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def iter_sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """Yield the data of each event in `lines` (already split, without line endings)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
        # comments, `event:`, `id:` and `retry:` carry nothing a chunk needs
    if data:
        yield "\n".join(data)
