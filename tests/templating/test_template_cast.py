"""`cast()`: each `as` type, what it accepts and what it rejects; stream casts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flowctl.engine.errors import CastError, TemplateError
from flowctl.engine.templating import cast, parse


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        ("hi", "text", "hi"),
        ("hi", "string", "hi"),
        (5, "text", "5"),
        (0.5, "text", "0.5"),
        (True, "text", "true"),
        (False, "text", "false"),
        ({"a": [1, "é"]}, "text", '{"a":[1,"é"]}'),
        ([1, 2], "text", "[1,2]"),
        (3, "number", 3),
        (0.7, "number", 0.7),
        ("0.7", "number", 0.7),
        (" 5 ", "number", 5.0),
        ("-1e3", "number", -1000.0),
        (5, "integer", 5),
        (2.0, "integer", 2),
        ("42", "integer", 42),
        ("-7", "integer", -7),
        ("3.0", "integer", 3),
        (True, "boolean", True),
        (False, "boolean", False),
        ("true", "boolean", True),
        ("FALSE", "boolean", False),
        ("1", "boolean", True),
        ("0", "boolean", False),
        ("Yes", "boolean", True),
        ("no", "boolean", False),
        ("on", "boolean", True),
        ("OFF", "boolean", False),
        (1, "boolean", True),
        (0, "boolean", False),
        ('{"a": 1}', "json", {"a": 1}),
        ("[1, 2]", "json", [1, 2]),
        ('"s"', "json", "s"),
        ({"a": 1}, "json", {"a": 1}),
        (5, "json", 5),
        (None, "json", None),
        ({"a": 1}, "object", {"a": 1}),
        ('{"a": 1}', "object", {"a": 1}),
        ([1], "list", [1]),
        ((1, 2), "list", [1, 2]),
        ("[1, 2]", "list", [1, 2]),
    ],
)
def test_cast_accepts(value: object, type_name: str, expected: object) -> None:
    result = cast(value, type_name)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ("hot", "number"),
        (True, "number"),
        ("nan", "number"),
        (float("inf"), "number"),
        ("1_000", "number"),
        ([1], "number"),
        ("hot", "integer"),
        (1.5, "integer"),
        ("1.5", "integer"),
        (True, "integer"),
        (False, "integer"),
        (None, "integer"),
        ("maybe", "boolean"),
        (2, "boolean"),
        (None, "boolean"),
        ("not json", "json"),
        ("[1, 2]", "object"),
        (5, "object"),
        ('{"a": 1}', "list"),
        ("a,b", "list"),
        (None, "text"),
    ],
)
def test_cast_rejects(value: object, type_name: str) -> None:
    with pytest.raises(CastError) as info:
        cast(value, type_name, "input.x")
    error = info.value
    assert (error.path, error.value, error.type_name) == ("input.x", value, type_name)
    assert "input.x" in str(error) and type_name in str(error)


def test_cast_error_path_defaults_to_value() -> None:
    with pytest.raises(CastError, match="'value' is 'hot', which is not a valid number"):
        cast("hot", "number")


def test_unknown_type() -> None:
    with pytest.raises(TemplateError, match="unknown type 'nubmer'") as info:
        cast(1, "nubmer")
    assert info.value.hint == "did you mean 'number'?"


# -- streams -----------------------------------------------------------------------------


class Upstream:
    """An async generator standing in for an upstream HTTP stream; records being closed."""

    def __init__(self, chunks: list[object]) -> None:
        self.chunks = chunks
        self.closed = False
        self.pulled = 0

    async def gen(self) -> AsyncIterator[object]:
        try:
            for chunk in self.chunks:
                self.pulled += 1
                yield chunk
        finally:
            self.closed = True


async def collect(stream: AsyncIterator[object]) -> list[object]:
    return [chunk async for chunk in stream]


async def test_stream_text_turns_chunks_into_text() -> None:
    up = Upstream(["He", 1, 2.5, True, None, {"a": 1}, [1]])
    assert await collect(cast(up.gen(), "stream/text")) == ["He", "1", "2.5", "true", '{"a":1}', "[1]"]


async def test_stream_json_passes_chunks_through() -> None:
    chunks = [{"a": 1}, "x", 3, None]
    assert await collect(cast(Upstream(chunks).gen(), "stream/json")) == chunks


async def test_a_plain_value_is_a_one_chunk_stream() -> None:
    assert await collect(cast("whole", "stream/text")) == ["whole"]
    assert await collect(cast({"a": 1}, "stream/text")) == ['{"a":1}']
    assert await collect(cast([1, 2], "stream/json")) == [[1, 2]]
    assert await collect(cast(iter(["a", "b"]), "stream/text")) == ["a", "b"]


async def test_closing_the_wrapper_closes_the_inner_generator() -> None:
    up = Upstream(["a", "b", "c"])
    stream = cast(up.gen(), "stream/text")
    assert await stream.__anext__() == "a"
    await stream.aclose()
    assert up.closed and up.pulled == 1
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_closing_before_the_first_chunk_still_closes_the_inner() -> None:
    closed: list[bool] = []

    class Inner:
        def __aiter__(self) -> Inner:
            return self

        async def __anext__(self) -> str:
            return "x"

        async def aclose(self) -> None:
            closed.append(True)

    stream = cast(Inner(), "stream/json")
    await stream.aclose()
    await stream.aclose()  # idempotent
    assert closed == [True]


async def test_breaking_out_and_closing_like_a_disconnect() -> None:
    up = Upstream([f"t{i}" for i in range(100)])
    stream = cast(up.gen(), "stream/text")

    async def consume() -> None:
        async for chunk in stream:
            if chunk == "t3":
                raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        try:
            await consume()
        finally:
            await stream.aclose()
    assert up.closed and up.pulled == 4


async def test_cancelled_consumer_closes_upstream() -> None:
    up_closed = asyncio.Event()

    async def slow() -> AsyncIterator[str]:
        try:
            yield "first"
            await asyncio.sleep(3600)
            yield "never"
        finally:
            up_closed.set()

    stream = cast(slow(), "stream/text")

    got_first = asyncio.Event()

    async def consume() -> None:
        try:
            async for _ in stream:
                got_first.set()  # the next step waits inside the upstream
        finally:
            await stream.aclose()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert up_closed.is_set()


async def test_whole_template_with_stream_type() -> None:
    up = Upstream(["a", "b"])
    stream = parse("${nodes.llm.output as stream/text}").render({"nodes": {"llm": {"output": up.gen()}}})
    assert await collect(stream) == ["a", "b"]
    default_stream = parse("${nodes.llm.output as stream/text | fallback}")
    assert await collect(default_stream.render({"nodes": {}})) == ["fallback"]
    assert await collect(default_stream.render({"nodes": {}})) == ["fallback"]  # a fresh stream each time
