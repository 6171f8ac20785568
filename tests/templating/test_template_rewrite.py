"""Static substitution of one source by the tree it stands for (`templating.rewrite.bind`):
what lets a model-compose job's input reach into its action's templates with no extra node."""

from __future__ import annotations

import pytest

from flowctl.engine.errors import TemplateError
from flowctl.engine.templating import parse
from flowctl.engine.templating.rewrite import Unbindable, bind, unparse

INPUT = {
    "text": "${nodes.quote.output.quote}",
    "voice": "${input.voice_id as select/a,b | a @(description Voice)}",
    "count": 3,
    "flag": True,
    "plain": "literal ${not a template} text".replace("${", "$${"),
    "mixed": "Hello ${input.name}!",
    "nested": {"a": "${input.x}", "b": [1, "${env.B}"]},
    "data": {"k": [1, 2]},
}


def bound(value: object) -> object:
    return bind(value, {("input",): INPUT})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${input.text}", "${nodes.quote.output.quote}"),
        ("${input.text as text}", "${nodes.quote.output.quote as text}"),
        ("${input.text.deeper[0]}", "${nodes.quote.output.quote.deeper[0]}"),
        ("${input.voice}", '${input.voice_id as select/a,b | "a" @(description Voice)}'),
        ("${input.voice as text}", '${input.voice_id as select/a,b | "a" @(description Voice)}'),  # the select says more
        ("${input.count}", 3),
        ("${input.count as text}", "3"),
        ("${input.flag}", True),
        ("${input.plain}", "literal $${not a template} text"),
        ("${input.mixed}", "Hello ${input.name}!"),
        ("${input.nested}", {"a": "${input.x}", "b": [1, "${env.B}"]}),
        ("${input.nested.b[1]}", "${env.B}"),
        ("${input.data}", {"k": [1, 2]}),
        ("${input.missing | fallback}", "fallback"),
        ("${env.HOME}", "${env.HOME}"),  # a source no binding covers is kept
        ("Say ${input.text} twice", "Say ${nodes.quote.output.quote} twice"),
        ("n=${input.count}, ${input.plain}", "n=3, literal $${not a template} text"),
        ("${input.missing | ${input.text}}", "${nodes.quote.output.quote}"),  # statically missing: the fallback
        ("${env.X | ${input.text}}", "${env.X | ${nodes.quote.output.quote}}"),
    ],
)
def test_bind(template: str, expected: object) -> None:
    assert bound(template) == expected


def test_bound_templates_still_render_as_the_original_would() -> None:
    scope = {"input": {"name": "Ann", "x": 1}, "env": {"B": "b"}, "nodes": {"quote": {"output": {"quote": "Q"}}}}
    for template, value in [("${input.mixed}", "Hello Ann!"), ("${input.plain}", "literal ${not a template} text"), ("x ${input.text}", "x Q")]:
        result = bound(template)
        assert parse(result).render(scope) == value if isinstance(result, str) else result == value


def test_a_whole_tree_is_bound_in_place() -> None:
    assert bound({"messages": [{"role": "user", "content": "${input.text}"}], "n": "${input.count}"}) == {
        "messages": [{"role": "user", "content": "${nodes.quote.output.quote}"}],
        "n": 3,
    }


@pytest.mark.parametrize(
    ("template", "message", "path"),
    [
        ("${input.nope}", "input has no 'nope'", ()),
        ("x ${input.nested}", "is a structure", ()),
        ("${input.count.x}", "is int, it has no 'x'", ()),
        ("${input.mixed as number}", "cannot be read as number", ()),
        ("${input.plain.x}", "is text, it has no 'x'", ()),
    ],
)
def test_what_cannot_be_one_template_says_why(template: str, message: str, path: tuple) -> None:
    with pytest.raises(Unbindable) as info:
        bound(template)
    assert message in str(info.value)
    assert info.value.value_path == path  # type: ignore[attr-defined]


def test_errors_carry_where_in_the_tree() -> None:
    with pytest.raises(Unbindable) as info:
        bound({"body": {"messages": [{"content": "${input.nope}"}]}})
    assert info.value.value_path == ("body", "messages", 0, "content")  # type: ignore[attr-defined]
    assert "it has: text, voice" in (info.value.hint or "")


def test_a_literal_that_does_not_cast_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="not a valid integer"):
        bind("${input.n as integer}", {("input",): {"n": "many"}})


def test_a_longer_binding_key_wins() -> None:
    bindings = {("jobs",): {"a": {"output": "${nodes.x.output}"}}, ("jobs", "a", "output"): "${nodes.a.output}"}
    assert bind("${jobs.a.output.k}", bindings, ("jobs",)) == "${nodes.a.output.k}"


def test_unparse_writes_back_what_parse_reads() -> None:
    for text in ['${input.x as select/a,b | "a" @(description Pick one)}', "${response.data[*].url as image[];url}",
                 '${input.c | ${env.D | "d"}}', "${nodes.my-node.output}"]:
        (ref,) = parse(text).references[:1]
        assert unparse(ref) == text
