"""Time to first token and tokens/s for flows/local_chat.yml: N streamed requests, medians.

    python flows/local_chat/bench.py                              # the llama server itself (:8011)
    python flows/local_chat/bench.py --api http://127.0.0.1:8080/api   # through `flowctl up`

Direct mode counts content deltas of /v1/chat/completions (llama.cpp sends one token per
chunk); API mode counts the SSE events of POST /workflows/chat/runs (one per chunk). The
first request after a server start is reported on its own (it pays one-off warm-up costs)
and is left out of the medians. Needs only httpx (flowctl's own venv has it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a CPU does.",
    "Give three tips for learning Python.",
    "Why is the sky blue?",
]


def direct(client: httpx.Client, url: str, prompt: str, max_tokens: int) -> list[tuple[float, str]]:
    body = {
        "model": "smollm2",
        "messages": [
            {"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
            {"role": "user", "content": prompt},
        ],
        "max_tokens": max_tokens, "temperature": 0.2, "top_p": 0.9, "stream": True,
    }
    chunks = []
    with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                content = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if content:
                    chunks.append((time.perf_counter(), content))
    return chunks


def api(client: httpx.Client, url: str, prompt: str, max_tokens: int) -> list[tuple[float, str]]:
    chunks, event, data = [], None, []
    body = {"input": {"prompt": prompt, "max_tokens": max_tokens}}
    with client.stream("POST", url + "/workflows/chat/runs", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line == "":
                if data and event in (None, "message"):
                    chunks.append((time.perf_counter(), "\n".join(data)))
                elif event == "error":
                    raise RuntimeError("\n".join(data))
                event, data = None, []
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8011", help="the llama server (direct mode)")
    parser.add_argument("--api", help="flowctl's API base, e.g. http://127.0.0.1:8080/api (API mode)")
    parser.add_argument("-n", type=int, default=5, help="requests counted in the medians")
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    send = (lambda c, p: api(c, args.api, p, args.max_tokens)) if args.api else (lambda c, p: direct(c, args.url, p, args.max_tokens))
    ttfts, rates = [], []
    with httpx.Client(timeout=300, trust_env=False) as client:
        for i in range(args.n + 1):
            prompt = PROMPTS[i % len(PROMPTS)]
            start = time.perf_counter()
            chunks = send(client, prompt)
            end = time.perf_counter()
            ttft = chunks[0][0] - start if chunks else float("nan")
            rate = (len(chunks) - 1) / (end - chunks[0][0]) if len(chunks) > 1 else 0.0
            text = "".join(c for _, c in chunks)
            label = "warm-up" if i == 0 else f"run {i}"
            print(f"{label:8} ttft={ttft * 1000:6.0f} ms  chunks={len(chunks):4}  {rate:5.1f} tok/s  {text[:70]!r}")
            if i:
                ttfts.append(ttft)
                rates.append(rate)
    print(f"median of {args.n}: time to first token {statistics.median(ttfts) * 1000:.0f} ms, {statistics.median(rates):.1f} tokens/s")


if __name__ == "__main__":
    main()
