"""One call of an inline Python hook, in a child Python process of its own.

A hook is Python written in the flow file by its operator (model-compose's job `hook:`):
it defines `hook(...)`, called with the job's input (and output, after the job) and the
keywords `task_id`, `job_id`, `run_id`, `phase`. Its return value replaces the input (or
output). flowctl never runs that code in its own process:

- the child is `sys.executable -I -u -c RUNNER RESULT_FILE`, started without a shell, in a
  process group of its own (`process_group.ProcessGroup`: stopped with the run, and by the
  watchdog if flowctl dies);
- the call's values go to it as one JSON document on stdin, never in its command line;
- its result comes back in a file of its own (`RESULT_FILE`, in a private temporary folder),
  so whatever the hook prints cannot corrupt it: the prints (stdout and stderr, a traceback
  included) are lines for the log (`on_line`);
- it runs at most `timeout` seconds; then its whole group is stopped.

A hook that raises, that runs too long, or that returns something JSON cannot carry fails
with a `HookFailed` whose message is the exception's last line (never the traceback, which
goes to the log) and, when the failing line is in the script, its line in the flow file.

    >>> HookFailed("KeyError: 'status'", line=31).describe("flow.yml")
    "KeyError: 'status' (flow.yml line 31)"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .process_group import ProcessGroup, describe_exit

# Runs in the child (`python -I`: no user site, no PYTHON* variables, no script folder on
# sys.path). The script is compiled under the flow file's name with blank lines in front, so
# a traceback's line numbers are the flow file's.
_RUNNER = r"""
import json, sys, traceback

def finish(answer):
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(answer, out)

def failure(exc, filename):
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        line = exc.lineno
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    text = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return {"error": text, "line": line}

request = json.load(sys.stdin)
filename = request["file"]
try:
    code = compile("\n" * (request["line"] - 1) + request["script"], filename, "exec")
    namespace = {"__name__": "__hook__"}
    exec(code, namespace)
    hook = namespace.get("hook")
    if not callable(hook):
        finish({"error": "the script defines no function named `hook`", "line": None})
        sys.exit(0)
    result = hook(*request["args"], **request["kwargs"])
    if hasattr(result, "__await__"):  # an `async def hook`; asyncio is imported only then (it is slow to import)
        import asyncio
        async def settle(awaitable):
            return await awaitable
        result = asyncio.run(settle(result))
except BaseException as exc:
    traceback.print_exc()
    finish(failure(exc, filename))
    sys.exit(0)
try:
    finish({"value": result})
except (TypeError, ValueError) as exc:
    finish({"error": f"it returned {type(result).__name__}, which JSON cannot carry ({exc})", "line": None})
"""


class HookFailed(Exception):
    """A hook call that gave no value: why (one line), and the flow file line it failed on."""

    def __init__(self, reason: str, *, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.hint = hint

    def describe(self, file: str) -> str:
        return self.reason + (f" ({file} line {self.line})" if self.line is not None else "")


@dataclass(frozen=True)
class HookCall:
    """What one hook call needs: the script, where it starts in `file`, the arguments."""

    script: str
    file: str
    #: the flow file line the script's first line is on
    line: int
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    timeout: float
    #: seconds between SIGTERM and SIGKILL when the group is stopped early
    grace: float = 2.0


async def call_hook(call: HookCall, on_line: Callable[[str], None]) -> Any:
    """Run the hook in its child process; its return value. Raises `HookFailed`."""
    try:
        request = json.dumps({"script": call.script, "file": call.file, "line": max(call.line, 1),
                              "args": list(call.args), "kwargs": dict(call.kwargs)}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise HookFailed(f"its arguments are not JSON ({exc})") from None
    folder = tempfile.mkdtemp(prefix="flowctl-hook-")
    try:
        result_file = os.path.join(folder, "result.json")
        try:
            group = await ProcessGroup.spawn([sys.executable, "-I", "-u", "-c", _RUNNER, result_file],
                                             on_line=on_line, grace=call.grace, stdin_pipe=True)
        except OSError as exc:
            raise HookFailed(f"cannot start Python ({sys.executable}): {exc.strerror or exc}") from None
        try:
            code = await _feed_and_wait(group, request.encode(), call.timeout)
        finally:
            await group.stop()
        return _result(result_file, code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _feed_and_wait(group: ProcessGroup, request: bytes, timeout: float) -> int:
    writer = group.stdin
    assert writer is not None
    try:
        async with asyncio.timeout(timeout):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                writer.write(request)
                await writer.drain()
                writer.close()
            return await group.wait()
    except TimeoutError:
        raise HookFailed(f"it ran longer than {timeout:g}s and was stopped",
                         hint="make the hook return sooner, or give it more time with `timeout:` beside `script:`") from None


def _result(path: str, code: int) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            answer = json.load(handle)
    except (OSError, ValueError):
        # no answer: the process died before it could write one (killed, os._exit, out of memory)
        raise HookFailed(f"its Python process {describe_exit(code)} without a result") from None
    if "value" in answer:
        return answer["value"]
    line = answer.get("line")
    raise HookFailed(str(answer.get("error")), line=line if isinstance(line, int) else None)


__all__ = ["HookCall", "HookFailed", "call_hook"]
