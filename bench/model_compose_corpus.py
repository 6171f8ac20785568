"""Run `flowctl validate` over a folder of model-compose files and tally the results.

    python bench/model_compose_corpus.py /path/to/examples [--flowctl .venv/bin/flowctl] [-v]

Every `model-compose.yml` under the folder is validated in its own process (as a user would
run it, from the file's folder); the report counts the files that validate and groups the
rest by the first error's message, with the file:line:col of one example each. Used for the
numbers in docs/model-compose.md; the example files themselves are not part of this repository.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path


def validate(flowctl: str, path: Path) -> tuple[bool, list[str]]:
    proc = subprocess.run([flowctl, "validate", path.name], cwd=path.parent, capture_output=True, text=True, timeout=120)
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    return proc.returncode == 0, lines


#: what decides whether a file can run at all, most fundamental first: a file that uses a
#: component flowctl does not run is counted under that, whatever else it holds
_PRIORITY = ("component type", "controller", "adapter", "key 'listener'", "key 'gateway'", "component runtime", "job type")


def reason(messages: list[str]) -> tuple[str, str]:
    """(the bucket, the message it came from): the most fundamental error of a file, without
    its location and hint."""
    texts = [re.sub(r"^(flowctl: error: )?[^:]+:\d+:\d+: ", "", m) for m in messages]
    texts = [re.sub(r" \(.*\)$", "", t).strip() for t in texts] or [""]
    for key in _PRIORITY:
        for text, message in zip(texts, messages, strict=False):
            if key in text:
                return text, message
    return texts[0], messages[0] if messages else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--flowctl", default=str(Path(sys.executable).with_name("flowctl")))
    parser.add_argument("-v", "--verbose", action="store_true", help="print every file's result")
    args = parser.parse_args()
    files = sorted(args.folder.rglob("model-compose.yml"))
    ok: list[Path] = []
    failed: dict[str, list[tuple[Path, str]]] = collections.defaultdict(list)
    for path in files:
        good, messages = validate(args.flowctl, path)
        if args.verbose:
            print(("ok   " if good else "FAIL ") + str(path.relative_to(args.folder)) + ("" if good else "\n       " + messages[0] if messages else ""))
        if good:
            ok.append(path)
        else:
            why, message = reason(messages)
            failed[why].append((path, message))
    print(f"{len(ok)} of {len(files)} files validate")
    for why, items in sorted(failed.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{len(items):4d}  {why}")
        if args.verbose:
            print(f"        e.g. {items[0][0].relative_to(args.folder)}: {items[0][1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
