"""Rendering: typed whole values, interpolation, defaults, missing values, per-chunk paths."""

from __future__ import annotations

import pytest

from flowctl.engine.errors import CastError, MissingValueError, TemplateError
from flowctl.engine.templating import parse

SCOPE = {
    "input": {"prompt": "hi", "n": "7", "temp": 0.5, "flag": "on", "cfg": {"model": "m", "tags": ["a", "b"]}, "none": None},
    "env": {"HOME": "/root"},
    "nodes": {"vllm": {"output": {"host": "localhost", "port": 8000}}, "my-node": {"output": "x"}},
    "run": {"id": "r1"},
}


def render(text: str, scope: dict | None = None):
    return parse(text).render(SCOPE if scope is None else scope)


def test_whole_value_keeps_its_type() -> None:
    assert render("${nodes.vllm.output.port}") == 8000
    assert render("${input.cfg}") == {"model": "m", "tags": ["a", "b"]}
    assert render("${input.temp}") == 0.5
    assert render("${nodes.my-node.output}") == "x"
    assert render("${env.HOME}") == "/root"


def test_whole_value_with_type() -> None:
    assert render("${input.n as integer}") == 7
    assert render("${input.n as number}") == 7.0
    assert render("${input.flag as boolean}") is True
    assert render("${nodes.vllm.output.port as text}") == "8000"
    assert render("${input.cfg as string}") == '{"model":"m","tags":["a","b"]}'


def test_interpolation() -> None:
    assert render("http://${nodes.vllm.output.host}:${nodes.vllm.output.port}/v1") == "http://localhost:8000/v1"
    assert render("${input.prompt}-${run.id}") == "hi-r1"
    assert render("cfg=${input.cfg}") == 'cfg={"model":"m","tags":["a","b"]}'
    assert render("tags=${input.cfg.tags}") == 'tags=["a","b"]'
    assert render("on=${input.flag as boolean}, off=${input.x as boolean | no}") == "on=true, off=false"
    assert render("t=${input.temp} n=${input.n as integer}") == "t=0.5 n=7"
    assert render("null=${input.none}") == "null=null"
    assert render("$${input.prompt} is ${input.prompt}") == "${input.prompt} is hi"


def test_defaults() -> None:
    empty = {"input": {}}
    assert render("${input.temperature | 0.7}", empty) == 0.7
    assert render('${input.model | "gpt-4o"}', empty) == "gpt-4o"
    assert render("${input.sep | 'a|b}'}", empty) == "a|b}"
    assert render("${input.max as integer | 512}", empty) == 512
    assert render("${input.max as text | 512}", empty) == "512"
    assert render("${input.max as number | 1}", empty) == 1
    assert render("${input.on as boolean | yes}", empty) is True
    assert render("${input.stop as list | []}", empty) == []
    assert render("${input.x | null}", empty) is None
    assert render("${input.x as integer | null}", empty) is None  # a null default is used as is
    assert render("model=${input.model | gpt-4o}!", empty) == "model=gpt-4o!"
    assert render("${input.prompt | unused}") == "hi"  # present value wins
    assert render("${nodes.gone.output | 1}") == 1
    assert render("${request.model | m}", empty) == "m"  # source absent from scope


def test_default_is_cast_to_the_type() -> None:
    assert render('${input.x as integer | "12"}', {"input": {}}) == 12
    assert render('${input.x as json | "[1, 2]"}', {"input": {}}) == [1, 2]


def test_missing_raises_naming_the_path() -> None:
    with pytest.raises(MissingValueError) as info:
        render("${input.prompt}", {"input": {}})
    assert info.value.path == "input.prompt"
    assert "input.prompt" in str(info.value)
    with pytest.raises(MissingValueError) as info:
        render("${nodes.vllm.output.model}")
    assert info.value.path == "nodes.vllm.output.model"
    assert "host, port" in str(info.value)  # the hint says what is there
    with pytest.raises(MissingValueError, match="request.model"):
        render("${request.model}")
    with pytest.raises(MissingValueError, match=r"input.cfg.tags\[5\]"):
        render("x ${input.cfg.tags[5]} y")
    assert issubclass(MissingValueError, TemplateError)


def test_null_is_present_only_untyped_or_json() -> None:
    assert render("${input.none}") is None
    assert render("${input.none as json}") is None
    with pytest.raises(MissingValueError, match="input.none"):
        render("${input.none as text}")
    assert render("${input.none as integer | 3}") == 3


def test_paths_do_not_step_into_the_wrong_kind() -> None:
    with pytest.raises(MissingValueError):
        render("${input.prompt[0]}")  # a string is not indexed
    with pytest.raises(MissingValueError):
        render("${input.cfg.tags.first}")  # a list has no keys
    with pytest.raises(MissingValueError):
        render("${input.cfg[0]}")  # a mapping has no index


def test_cast_failure_names_path_value_and_type() -> None:
    with pytest.raises(CastError) as info:
        render("${input.t as number}", {"input": {"t": "hot"}})
    error = info.value
    assert (error.path, error.value, error.type_name) == ("input.t", "hot", "number")
    assert str(error) == "'input.t' is 'hot', which is not a valid number"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("${response[].choices[0].delta.content}", "Hel"),
        ("${response[].choices[-1].index}", 1),
        ('${response[]["x-meta"]["a b"]}', 1),
        ("${response[].choices[0]['delta'].content}", "Hel"),
        ("${response[]}", None),  # replaced below
    ],
)
def test_per_chunk_paths(text: str, value: object) -> None:
    chunk = {"choices": [{"delta": {"content": "Hel"}, "index": 0}, {"delta": {}, "index": 1}], "x-meta": {"a b": 1}}
    template = parse(text)
    expected = chunk if value is None else value
    for _ in range(3):  # parse once, render many times
        assert template.render({"response[]": chunk, "response": {"whole": True}}) == expected


def test_render_or_skips_chunks_without_the_path() -> None:
    template = parse("${response[].choices[0].delta.content}")
    skip = object()
    assert template.render_or({"response[]": {"choices": [{"delta": {"role": "assistant"}}]}}, skip) is skip
    assert template.render_or({"response[]": {"choices": []}}, skip) is skip
    assert template.render_or({"response[]": {"choices": [{"delta": {"content": "t"}}]}}, skip) == "t"
    assert parse("a${input.x}b").render_or({"input": {}}, skip) is skip
    assert parse("a${input.x}b").render_or({"input": {"x": 1}}, skip) == "a1b"
    assert parse("lit").render_or({}, skip) == "lit"


def test_scope_can_be_any_mapping() -> None:
    from types import MappingProxyType

    scope = MappingProxyType({"env": MappingProxyType({"A": "1"}), "input": {"xs": ("p", "q")}})
    assert parse("${env.A as integer}").render(scope) == 1
    assert parse("${input.xs[-1]}").render(scope) == "q"


def test_render_is_fast_enough_per_token() -> None:
    import time

    template = parse("${response[].choices[0].delta.content}")
    scope = {"response[]": {"choices": [{"delta": {"content": "tok"}}]}}
    start = time.perf_counter()
    for _ in range(20_000):
        template.render(scope)
    assert time.perf_counter() - start < 0.5  # ~1 µs each on a laptop; generous bound
