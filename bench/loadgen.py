"""The load client of flowctl's benchmark: httpx, asyncio, one small module.

It sends streamed chat requests at a fixed concurrency (a closed loop: each of `c` workers
sends its next request as soon as the previous one ends) and measures, per request:

- TTFT: from just before the request is sent to the first *content token* parsed by the
  client (role chunks, keep-alive comments and the like do not count);
- total time: from the same start to the end of the stream;
- the tokens received, in order, checked against the exact sequence the upstream sends
  (tests/servers/fake_vllm.py is deterministic: ``w0``, `` w1``, ... see `expected_tokens`).

Three wire protocols, one parser each, all over the same byte-level SSE line splitter so
that no contender pays for a slower client path than another:

``openai``       ``POST /v1/chat/completions`` with ``stream: true``: SSE events whose data is
                 a ``chat.completion.chunk``; a token is ``choices[0].delta.content`` when it
                 is a non-empty string; ``data: [DONE]`` ends the stream. Used for the
                 upstream itself (the floor) and for flowctl's OpenAI facade.
``flowctl``      ``POST /api/workflows/{id}/runs``: one SSE event per chunk (``id: n`` /
                 ``data: chunk``); ``event: done`` ends it, ``event: error`` fails it.
``model-compose`` ``POST /api/workflows/runs`` with ``output_only: true``: one ``data:`` event
                 per chunk, no end event (the body ends).

Adding a contender that speaks one of these is one `Target`; a new wire format is one
parser function added to `PARSERS`.

Ad hoc use::

    python bench/loadgen.py --protocol openai --url http://127.0.0.1:8000/v1/chat/completions \\
        --tokens 64 -c 8 -n 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

MODEL = "qwen2-7b-instruct"
PROMPT = "Say something."


def expected_tokens(n: int) -> list[str]:
    """What tests/servers/fake_vllm.py streams for ``--tokens n`` (kept in step with its own
    `expected_tokens`; bench/run.py checks the two agree at start)."""
    return [f"w{i}" if i == 0 else f" w{i}" for i in range(n)]


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """Where and how to send one streamed chat request."""

    name: str
    protocol: str  # a key of PARSERS
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def openai_target(name: str, base: str, model: str = MODEL) -> Target:
    """An OpenAI-compatible server (the upstream itself, or flowctl's facade): `base` is
    ``http://HOST:PORT`` (the ``/v1`` is added)."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True, "temperature": 0.7, "max_tokens": 512}
    return Target(name, "openai", f"{base}/v1/chat/completions", body)


def flowctl_target(name: str, base: str, workflow: str = "chat", base_path: str = "/api") -> Target:
    """flowctl's native streaming endpoint of one workflow."""
    return Target(name, "flowctl", f"{base}{base_path}/workflows/{workflow}/runs", {"input": {"prompt": PROMPT}},
                  {"Accept": "text/event-stream"})


def model_compose_target(name: str, base: str, base_path: str = "/api", workflow: str | None = None) -> Target:
    """model-compose's run endpoint with ``output_only`` (the only form that streams in 0.4.120)."""
    body: dict[str, Any] = {"input": {"prompt": PROMPT}, "output_only": True, "wait_for_completion": True}
    if workflow is not None:
        body["workflow_id"] = workflow
    return Target(name, "model-compose", f"{base}{base_path}/workflows/runs", body)


# --------------------------------------------------------------------------- parsing


class SSELines:
    """Byte-level SSE splitter (WHATWG rules that matter here): `feed` returns the complete
    events as ``(event_type_or_None, data)``; several ``data:`` lines join with ``\\n``;
    ``id:`` and comment lines are ignored."""

    __slots__ = ("buf", "data", "event")

    def __init__(self) -> None:
        self.buf = b""
        self.data: list[str] = []
        self.event: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        lines = (self.buf + chunk).split(b"\n")
        self.buf = lines.pop()
        out: list[tuple[str | None, str]] = []
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self.data:
                    out.append((self.event, "\n".join(self.data)))
                self.data = []
                self.event = None
            elif line[:5] == b"data:":
                value = line[5:]
                if value[:1] == b" ":
                    value = value[1:]
                self.data.append(value.decode())
            elif line[:6] == b"event:":
                self.event = line[6:].strip().decode()
        return out


class StreamEnd(Exception):
    """The protocol's end-of-stream marker was seen."""


class StreamFailed(Exception):
    """The stream carried an error event."""


def _openai_tokens(events: list[tuple[str | None, str]], out: list[str]) -> None:
    for _event, data in events:
        if data == "[DONE]":
            raise StreamEnd
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise StreamFailed(f"not JSON: {data[:80]!r}") from None
        if "error" in chunk:
            raise StreamFailed(str(chunk["error"])[:200])
        choices = chunk.get("choices") or ()
        if choices:
            content = (choices[0].get("delta") or {}).get("content")
            if isinstance(content, str) and content:
                out.append(content)


def _flowctl_tokens(events: list[tuple[str | None, str]], out: list[str]) -> None:
    for event, data in events:
        if event is None or event == "message":
            out.append(data)
        elif event == "done":
            raise StreamEnd
        elif event == "error":
            raise StreamFailed(data[:200])


#: protocol -> (parser, whether the stream must end with an explicit end marker).
#: model-compose sends untyped `data:` events only and ends with the body; flowctl answering
#: model-compose's route adds its `event: done`, which the same parser reads.
PARSERS: dict[str, tuple[Callable[[list[tuple[str | None, str]], list[str]], None], bool]] = {
    "openai": (_openai_tokens, True),
    "flowctl": (_flowctl_tokens, True),
    "model-compose": (_flowctl_tokens, False),
}


# --------------------------------------------------------------------------- one request


@dataclass
class Result:
    ok: bool
    ttft: float | None  # seconds
    total: float  # seconds
    tokens: int
    order_ok: bool  # the exact token sequence, chunk for chunk
    text_ok: bool  # the concatenated text (a contender may regroup chunks)
    error: str | None = None


async def one_request(client: httpx.AsyncClient, target: Target, expected: list[str]) -> Result:
    parse, needs_end = PARSERS[target.protocol]
    sse = SSELines()
    tokens: list[str] = []
    ttft: float | None = None
    ended = False
    error: str | None = None
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", target.url, json=target.body, headers=target.headers) as response:
            if response.status_code != 200:
                body = (await response.aread())[:200].decode(errors="replace")
                error = f"HTTP {response.status_code}: {body}"
            else:
                async for raw in response.aiter_raw():
                    events = sse.feed(raw)
                    if not events:
                        continue
                    had = len(tokens)
                    try:
                        parse(events, tokens)
                    except StreamEnd:
                        ended = True
                    if ttft is None and len(tokens) > had:
                        ttft = time.perf_counter() - t0
                    if ended:
                        break
    except StreamFailed as exc:
        error = f"error event: {exc}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    total = time.perf_counter() - t0
    if error is None and needs_end and not ended:
        error = "stream ended without its end marker"
    order_ok = tokens == expected
    text_ok = order_ok or "".join(tokens) == "".join(expected)
    if error is None and not text_ok:
        error = f"wrong text: {len(tokens)} chunks, starts {''.join(tokens)[:40]!r}"
    return Result(error is None, ttft, total, len(tokens), order_ok, text_ok, error)


# --------------------------------------------------------------------------- one batch


@dataclass
class Batch:
    target: str
    concurrency: int
    wall: float  # seconds from the first send to the last end
    results: list[Result]

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.results if r.ok)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall if self.wall > 0 else 0.0


async def run_batch(client: httpx.AsyncClient, target: Target, concurrency: int, requests: int, expected: list[str]) -> Batch:
    """`requests` requests through `concurrency` workers, each sending the next as soon as its
    previous one ends (a closed loop, as a chat UI with `concurrency` users typing fast)."""
    results: list[Result] = []
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            results.append(await one_request(client, target, expected))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
    return Batch(target.name, concurrency, time.perf_counter() - t0, results)


def new_client(max_connections: int = 128) -> httpx.AsyncClient:
    """One pooled HTTP/1.1 client per contender; no proxies from the environment."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0), trust_env=False,
                             headers={"Accept-Encoding": "identity"})


# --------------------------------------------------------------------------- summaries


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(batches: list[Batch]) -> dict[str, Any]:
    """Pool the requests of several batches (rounds) of one contender in one cell."""
    results = [r for b in batches for r in b.results]
    ok = [r for r in results if r.ok]
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    totals = [r.total for r in ok]
    wall = sum(b.wall for b in batches)
    tokens = sum(b.tokens for b in batches)
    errors = [r.error for r in results if not r.ok]
    return {
        "requests": len(results),
        "errors": len(errors),
        "error_samples": sorted({e for e in errors if e})[:3],
        "order_ok": sum(1 for r in results if r.order_ok),
        "ttft_p50_ms": _ms(percentile(ttfts, 50)),
        "ttft_p95_ms": _ms(percentile(ttfts, 95)),
        "total_p50_ms": _ms(percentile(totals, 50)),
        "total_p95_ms": _ms(percentile(totals, 95)),
        "tokens": tokens,
        "wall_s": round(wall, 4),
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        # throughput per round, to show the spread on a noisy machine
        "tokens_per_s_rounds": [round(b.tokens_per_s, 1) for b in batches],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Send streamed chat requests and report TTFT, total time and tokens/s.")
    p.add_argument("--protocol", choices=sorted(PARSERS), required=True)
    p.add_argument("--url", required=True, help="full URL of the streaming endpoint")
    p.add_argument("--tokens", type=int, required=True, help="tokens the upstream sends per reply (--tokens of fake_vllm.py)")
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("-n", "--requests", type=int, default=100)
    p.add_argument("--workflow", default=None, help="model-compose: workflow_id (default: its default workflow)")
    a = p.parse_args(argv)
    base = a.url
    if a.protocol == "openai":
        target = Target("adhoc", "openai", base, openai_target("x", "").body)
    elif a.protocol == "flowctl":
        target = Target("adhoc", "flowctl", base, {"input": {"prompt": PROMPT}}, {"Accept": "text/event-stream"})
    else:
        target = Target("adhoc", "model-compose", base, model_compose_target("x", "", workflow=a.workflow).body)

    async def go() -> Batch:
        async with new_client(max(a.concurrency, 8)) as client:
            return await run_batch(client, target, a.concurrency, a.requests, expected_tokens(a.tokens))

    batch = asyncio.run(go())
    print(json.dumps(summarize([batch]), indent=2))
    return 0 if all(r.ok for r in batch.results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
