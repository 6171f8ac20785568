"""`compile_value`: whole YAML trees, static parts, and where errors happened."""

from __future__ import annotations

import pytest

from flowctl.engine.errors import CastError, MissingValueError, TemplateError
from flowctl.engine.templating import CompiledValue, compile_value, find_template_errors


def test_renders_a_nested_tree() -> None:
    body = {
        "model": "${input.model | gpt-4o}",
        "temperature": "${input.temperature as number | 0.7}",
        "stream": True,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q: ${input.prompt}"}],
        "max_tokens": 512,
    }
    compiled = compile_value(body)
    assert isinstance(compiled, CompiledValue) and not compiled.is_static
    assert [r.dotted for r in compiled.references] == ["input.model", "input.temperature", "input.prompt"]
    out = compiled.render({"input": {"prompt": "why?", "temperature": "0.2"}})
    assert out == {
        "model": "gpt-4o",
        "temperature": 0.2,
        "stream": True,
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Q: why?"}],
        "max_tokens": 512,
    }
    assert out["messages"][0] is body["messages"][0]  # static parts are returned as they are
    assert body["model"] == "${input.model | gpt-4o}"  # the source is not touched


def test_static_values() -> None:
    tree = {"a": [1, "two", {"b": None}], "c": "plain"}
    compiled = compile_value(tree)
    assert compiled.is_static and compiled.references == ()
    assert compiled.render({}) is tree
    assert compile_value("text").render({}) == "text"
    assert compile_value(3).render({}) == 3
    escaped = compile_value({"cmd": ["echo", "$${HOME}"]})
    assert escaped.is_static and escaped.render({}) == {"cmd": ["echo", "${HOME}"]}


def test_whole_string_items_keep_their_type() -> None:
    compiled = compile_value(["--port", "${nodes.vllm.output.port}", "--tp", "${input.tp as integer | 1}"])
    assert compiled.render({"nodes": {"vllm": {"output": {"port": 8000}}}, "input": {}}) == ["--port", 8000, "--tp", 1]


def test_keys_are_literal() -> None:
    assert compile_value({"${input.k}": "${input.v}"}).render({"input": {"v": 1}}) == {"${input.k}": 1}


def test_syntax_error_carries_value_path() -> None:
    with pytest.raises(TemplateError) as info:
        compile_value({"body": {"messages": [{"content": "ok"}, {"content": "${input.x as nubmer}"}]}})
    error = info.value
    assert error.value_path == ("body", "messages", 1, "content")
    assert error.offset == 13 and error.template == "${input.x as nubmer}"


def test_render_errors_carry_value_path() -> None:
    compiled = compile_value({"headers": {"Authorization": "Bearer ${env.TOKEN}"}, "n": "${input.n as integer}"})
    with pytest.raises(MissingValueError) as info:
        compiled.render({"env": {}, "input": {"n": 1}})
    assert info.value.value_path == ("headers", "Authorization") and info.value.path == "env.TOKEN"
    with pytest.raises(CastError) as cast_info:
        compiled.render({"env": {"TOKEN": "t"}, "input": {"n": "many"}})
    assert cast_info.value.value_path == ("n",)


def test_find_template_errors_collects_them_all() -> None:
    tree = {"a": "${inptu.x}", "b": ["fine ${input.y}", "${input.z as nubmer}"], "c": "${input.w"}
    found = find_template_errors(tree)
    assert [path for path, _ in found] == [("a",), ("b", 1), ("c",)]
    assert all(error.value_path == path for path, error in found)
    assert find_template_errors({"ok": "${input.x}"}) == []
    assert compile_value({"ok": "${input.x}"}).errors() == []


def test_templates_lists_each_string_with_its_path() -> None:
    compiled = compile_value({"a": "${input.x}", "b": ["lit"]})
    assert [(path, t.is_whole) for path, t in compiled.templates] == [(("a",), True), (("b", 0), False)]
