"""Time to first token and tokens/s for flows/local_chat.yml: N streamed requests, medians.

    python flows/local_chat/bench.py                              # the llama server itself (:8011)
    python flows/local_chat/bench.py --api http://127.0.0.1:8080/api   # through `flowctl up`
    python flows/local_chat/bench.py --url http://127.0.0.1:8111 --url http://127.0.0.1:8112 --rounds 4
                                      # two servers (two builds, say), interleaved, with ratios
    python flows/local_chat/bench.py --prompt-eval --url ... --url ...    # prompt evaluation instead

Direct mode counts content deltas of /v1/chat/completions (llama.cpp sends one token per
chunk); API mode counts the SSE events of POST /workflows/chat/runs (one per chunk). The
first request to each target is reported on its own (it pays one-off warm-up costs) and is
left out of the medians. With several targets, each round sends N requests to each target
in turn, so a change in the machine's load falls on all of them alike; the summary gives
each target's medians and its ratio to the first target's. `--prompt-eval` measures how fast
a server reads a prompt instead (llama.cpp's batched kernels): a ~420-token prompt with
`max_tokens: 1` to /v1/completions, each one starting differently so that no server reuses a
cached prefix; tokens/s is the prompt's token count (the server's own `usage`) over the
request's time. Needs only httpx (flowctl's own venv has it).
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


PASSAGE = ("The Seine is a river in northern France. It rises near Dijon, flows through Troyes and Paris, "
           "and reaches the English Channel at Le Havre. ") * 12


def prompt_eval(client: httpx.Client, url: str, i: int) -> tuple[float, float, str]:
    """(seconds, prompt tokens/s, the one token) for a long prompt and a 1-token answer."""
    body = {"model": "smollm2", "prompt": f"Request {i}. {PASSAGE}", "max_tokens": 1, "temperature": 0}
    start = time.perf_counter()
    response = client.post(url + "/v1/completions", json=body)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    answer = response.json()
    return elapsed, answer["usage"]["prompt_tokens"] / elapsed, answer["choices"][0]["text"]


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
    parser.add_argument("--url", action="append", help="a llama server (direct mode; default http://127.0.0.1:8011); repeat to compare servers")
    parser.add_argument("--api", help="flowctl's API base, e.g. http://127.0.0.1:8080/api (API mode)")
    parser.add_argument("-n", type=int, default=5, help="requests per target and round counted in the medians")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of N requests to each target in turn")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt-eval", action="store_true", help="measure prompt evaluation (direct mode only)")
    args = parser.parse_args()
    if args.prompt_eval and args.api:
        parser.error("--prompt-eval talks to llama servers directly (--url), not to flowctl's API")
    if args.api:
        targets = {args.api: lambda c, p: api(c, args.api, p, args.max_tokens)}
    else:
        targets = {url: (lambda c, p, url=url: direct(c, url, p, args.max_tokens)) for url in args.url or ["http://127.0.0.1:8011"]}
    ttfts: dict[str, list[float]] = {target: [] for target in targets}
    rates: dict[str, list[float]] = {target: [] for target in targets}
    with httpx.Client(timeout=300, trust_env=False) as client:
        sent = 0

        def measure(target: str, label: str, prompt: str) -> tuple[float, float]:
            nonlocal sent
            sent += 1
            if args.prompt_eval:
                seconds, rate, token = prompt_eval(client, target, sent)
                print(f"{target:28} {label:10} {seconds * 1000:6.0f} ms  {rate:5.0f} prompt tokens/s  {token!r}")
                return seconds, rate
            start = time.perf_counter()
            chunks = targets[target](client, prompt)
            end = time.perf_counter()
            ttft = chunks[0][0] - start if chunks else float("nan")
            rate = (len(chunks) - 1) / (end - chunks[0][0]) if len(chunks) > 1 else 0.0
            text = "".join(c for _, c in chunks)
            print(f"{target:28} {label:10} ttft={ttft * 1000:6.0f} ms  chunks={len(chunks):4}  {rate:5.1f} tok/s  {text[:50]!r}")
            return ttft, rate

        for target in targets:
            measure(target, "warm-up", PROMPTS[0])
        for round_ in range(args.rounds):
            for target in targets:
                for i in range(args.n):
                    ttft, rate = measure(target, f"r{round_ + 1} run {i + 1}", PROMPTS[(i + 1) % len(PROMPTS)])
                    ttfts[target].append(ttft)
                    rates[target].append(rate)
    first = next(iter(targets))
    for target in targets:
        ttft, rate = statistics.median(ttfts[target]), statistics.median(rates[target])
        line = f"{target}: median of {len(rates[target])}: time to first token {ttft * 1000:.0f} ms, {rate:.1f} tokens/s"
        if args.prompt_eval:
            line = f"{target}: median of {len(rates[target])}: prompt evaluation {rate:.1f} tokens/s"
            if target != first:
                line += f" (x{rate / statistics.median(rates[first]):.2f} the prompt tokens/s of {first})"
        elif target != first:
            line += (f" (x{rate / statistics.median(rates[first]):.2f} the tokens/s, x{ttft / statistics.median(ttfts[first]):.2f}"
                     f" the time to first token of {first})")
        print(line)


if __name__ == "__main__":
    main()
