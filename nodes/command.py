"""command: run a program once per run; its stdout is the node's output.

    count:
      type: command
      argv: [wc, -w]                      # a list: each item one argument, never a shell string
      stdin: ${nodes.draft.output}        # text (objects as JSON), or a stream fed as it comes
      stdout: text                        # text (one value) | lines (a stream) | json
      timeout: 30

Every argv item is a template rendered to exactly one argument, so a value from a request can
never become shell syntax (there is no string form). The program runs in its own process
group (`process_group.ProcessGroup`): when the run ends for any reason (done, failed, client
gone, cancelled, flowctl killed) the whole group is stopped. A non-zero exit fails the node
with the code and the last lines of stderr; so does running past `timeout`.

With `container:` (`nodes/container.py`) the argv runs in a fresh container instead, the
`env` passed into it; stopping the group then stops the container by name.

`stdout: lines` yields each line as it is written, newline included, so the lines joined
are stdout byte for byte and a reader `as stream/text` forwards them live.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..engine.errors import RunError
from ..engine.templating import to_text
from .base import Chunks, RunContext, RunNodeSpec
from .container import ContainerSpec, ensure_image, require_program
from .process_group import ProcessGroup, describe_exit

_READ = 65536


class CommandSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "argv", "stdin", "env", "cwd")

    type: Literal["command"]
    #: the program and its arguments; each item is one argument
    argv: list[Any] = Field(min_length=1)
    #: written to the program's stdin: text, a value (as JSON), or a stream (chunk by chunk)
    stdin: Any = None
    #: added to flowctl's own environment
    env: dict[str, Any] = {}
    #: working directory (default: flowctl's)
    cwd: str | None = None
    #: `text`: stdout as one string (one trailing newline removed, as `$(...)` does);
    #: `lines`: a stream of lines as they are written; `json`: stdout parsed as JSON
    stdout: Literal["text", "lines", "json"] = "text"
    #: seconds the program may run
    timeout: float = Field(default=60.0, gt=0)
    #: lines of stderr quoted when it fails
    stderr_lines: int = Field(default=20, ge=0)
    #: seconds between SIGTERM and SIGKILL when the group is stopped early
    stop_timeout: float = Field(default=2.0, ge=0)
    #: run the argv in a container (its own `stop_timeout` then applies)
    container: ContainerSpec | None = None


class CommandNode:
    def __init__(self, spec: CommandSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        argv = [to_text(item) for item in ctx.resolve("argv")]
        stdin = ctx.resolve("stdin")
        env = dict(os.environ)
        extra_env = {str(k): to_text(v) for k, v in (ctx.resolve("env") or {}).items()}
        cwd = ctx.resolve("cwd")
        command, grace, label = argv, spec.stop_timeout, argv[0]
        if spec.container is None:
            env.update(extra_env)
        else:
            program = require_program(spec.container, ctx.node_id)
            await ensure_image(spec.container, program, ctx.node_id)
            name = spec.container.container_name(ctx.run_id, ctx.node_id)
            command, grace = spec.container.argv(name, extra_env, argv), spec.container.grace
            label = f"{argv[0]} (in a {spec.container.program} container of {spec.container.image})"
        stderr: collections.deque[str] = collections.deque(maxlen=max(spec.stderr_lines, 1))
        try:
            group = await ProcessGroup.spawn(
                command, env=env, cwd=cwd, on_line=stderr.append, grace=grace,
                stdin_pipe=stdin is not None, stdout_pipe=True,
            )
        except OSError as exc:
            raise RunError(ctx.node_id, f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.timeout
        feeder: asyncio.Task[None] | None = None
        try:
            if stdin is not None:
                feeder = loop.create_task(_feed(group, stdin), name=f"stdin:{ctx.node_id}")
            # a deadline per wait, not one `timeout` block around the whole body: the body
            # yields (stdout: lines), and a timer must never fire in the reader's code
            if spec.stdout == "lines":
                async for line in _lines(group, deadline):
                    yield line
                data = b""
            else:
                async with asyncio.timeout_at(deadline):
                    data = await _read_all(group)
            async with asyncio.timeout_at(deadline):
                code = await group.wait()
                if feeder is not None:
                    await feeder
            if code != 0:
                raise RunError(ctx.node_id, f"{label} {describe_exit(code)}" + _tail(stderr, spec.stderr_lines))
            if spec.stdout == "lines":
                return
            text = data.decode("utf-8", errors="replace")
            if spec.stdout == "json":
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise RunError(ctx.node_id, f"{label} printed no JSON ({exc.msg} at line {exc.lineno})" + _excerpt(text)) from None
                yield value
                return
            yield text[:-1] if text.endswith("\n") else text
        except TimeoutError:
            raise RunError(ctx.node_id, f"{label} ran longer than {spec.timeout:g}s" + _tail(stderr, spec.stderr_lines)) from None
        finally:
            if feeder is not None and not feeder.done():
                feeder.cancel()
            await group.stop()
            if feeder is not None:
                await asyncio.gather(feeder, return_exceptions=True)


async def _feed(group: ProcessGroup, stdin: Any) -> None:
    """Write `stdin` to the program and close its stdin. A program that exits without
    reading it all is not an error here (its exit code says what happened)."""
    writer = group.stdin
    assert writer is not None
    try:
        if isinstance(stdin, AsyncGenerator):
            try:
                async for chunk in stdin:
                    writer.write(to_text(chunk).encode())
                    await writer.drain()
            finally:
                await stdin.aclose()
        else:
            writer.write(to_text(stdin).encode())
            await writer.drain()
        writer.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _read_all(group: ProcessGroup) -> bytes:
    stdout = group.stdout
    assert stdout is not None
    parts = []
    while chunk := await stdout.read(_READ):
        parts.append(chunk)
    return b"".join(parts)


async def _lines(group: ProcessGroup, deadline: float) -> AsyncIterator[str]:
    stdout = group.stdout
    assert stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    while True:
        async with asyncio.timeout_at(deadline):
            chunk = await stdout.read(_READ)
        if not chunk:
            break
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _tail(lines: collections.deque[str], limit: int) -> str:
    if not lines or limit == 0:
        return ""
    return "; stderr:\n" + "\n".join(list(lines)[-limit:])


def _excerpt(text: str, limit: int = 200) -> str:
    text = text.strip()
    if not text:
        return ""
    return ": " + (text if len(text) <= limit else text[: limit - 3] + "...")
