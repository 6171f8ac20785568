"""Parsing: references, paths, types, YAML-scalar defaults, escapes and syntax errors."""

from __future__ import annotations

import pytest

from flowctl.engine.errors import TemplateError
from flowctl.engine.templating import NO_DEFAULT, SOURCES, TYPES, Reference, parse


def ref(text: str) -> Reference:
    (only,) = parse(text).references
    return only


def test_public_vocabulary() -> None:
    assert SOURCES == ("input", "env", "nodes", "response", "response[]", "result", "run", "request", "item", "index", "loop", "hook", "replica")
    for name in ("text", "string", "number", "integer", "boolean", "json", "object", "list", "stream/text", "stream/json"):
        assert name in TYPES


@pytest.mark.parametrize(
    ("text", "source", "path"),
    [
        ("${input.prompt}", "input", ("prompt",)),
        ("${env.HOME}", "env", ("HOME",)),
        ("${nodes.vllm.output.port}", "nodes", ("vllm", "output", "port")),
        ("${nodes.my-node.output}", "nodes", ("my-node", "output")),
        ("${nodes.my_node.output}", "nodes", ("my_node", "output")),
        ("${response}", "response", ()),
        ("${response[]}", "response[]", ()),
        ("${response[].choices[0].delta.content}", "response[]", ("choices", 0, "delta", "content")),
        ("${response[][-1]}", "response[]", (-1,)),
        ("${response[0]}", "response", (0,)),
        ("${run.id}", "run", ("id",)),
        ("${request.messages[-1].content}", "request", ("messages", -1, "content")),
        ('${input["a key.with }dots"]}', "input", ("a key.with }dots",)),
        ("${input['it''s']}", "input", ("it's",)),
        ("${ input.x }", "input", ("x",)),
    ],
)
def test_sources_and_paths(text: str, source: str, path: tuple) -> None:
    r = ref(text)
    assert (r.source, r.path) == (source, path)
    assert r.type is None and r.default is NO_DEFAULT and not r.has_default
    assert r.text == text


def test_dotted_writes_the_path_back() -> None:
    assert ref("${input.prompt}").dotted == "input.prompt"
    assert ref("${response[].choices[0].delta.content}").dotted == "response[].choices[0].delta.content"
    assert ref('${input["a b"][-2]}').dotted == 'input["a b"][-2]'


@pytest.mark.parametrize(
    ("written", "normalised"),
    [("text", "text"), ("string", "text"), ("number", "number"), ("integer", "integer"), ("boolean", "boolean"),
     ("json", "json"), ("object", "object"), ("list", "list"), ("stream/text", "stream/text"), ("stream/json", "stream/json")],
)  # fmt: skip
def test_types(written: str, normalised: str) -> None:
    assert ref(f"${{input.x as {written}}}").type == normalised


@pytest.mark.parametrize(
    ("default", "value"),
    [
        ("0.7", 0.7),
        ("512", 512),
        ("-3", -3),
        ("1e3", 1000.0),
        ("0x1f", 31),
        ('"gpt-4o"', "gpt-4o"),
        ("gpt-4o", "gpt-4o"),
        ("'x y'", "x y"),
        ("hello world", "hello world"),
        ("true", True),
        ("False", False),
        ("yes", "yes"),  # YAML 1.2: only true/false are booleans
        ("null", None),
        ("~", None),
        ('""', ""),
        ("'a|b}'", "a|b}"),
        ('"a|b}"', "a|b}"),
        ('"tab\\there \\"q\\" \\u00e9"', 'tab\there "q" é'),
        ("'it''s'", "it's"),
        ("it's", "it's"),
        ('"512"', "512"),
        ("[]", []),
        ("[1, two]", [1, "two"]),
        ('{"a": [1, {b: 2}]}', {"a": [1, {"b": 2}]}),
    ],
)
def test_default_is_a_yaml_scalar(default: str, value: object) -> None:
    r = ref(f"${{input.x | {default}}}")
    assert r.has_default
    assert r.default == value and type(r.default) is type(value)


def test_default_is_not_cast_in_the_reference() -> None:
    r = ref("${input.x as text | 5}")
    assert r.default == 5 and r.type == "text"


def test_literal_and_escapes() -> None:
    t = parse("plain text")
    assert t.is_literal and not t.is_whole and t.references == ()
    assert parse("costs $5, a $ sign, {braces} and }").render({}) == "costs $5, a $ sign, {braces} and }"
    escaped = parse("write $${input.x} to interpolate")
    assert escaped.is_literal and escaped.render({}) == "write ${input.x} to interpolate"
    assert parse("$${a}-${input.a}").references[0].dotted == "input.a"


def test_whole_versus_interpolated() -> None:
    assert parse("${input.x}").is_whole
    assert not parse(" ${input.x}").is_whole
    assert not parse("${input.x} ").is_whole
    both = parse("${input.a}-${input.b}")
    assert not both.is_whole and not both.is_literal
    assert [r.dotted for r in both.references] == ["input.a", "input.b"]


@pytest.mark.parametrize(
    ("text", "offset", "message", "hint"),
    [
        ("${input.x as nubmer}", 13, "unknown type 'nubmer'", "did you mean 'number'?"),
        ("${input.x as int}", 13, "unknown type 'int'", "did you mean 'integer'?"),
        ("${input.x as stream/txt}", 13, "unknown type 'stream/txt'", "did you mean 'stream/text'?"),
        ("${inptu.prompt}", 2, "unknown source 'inptu'", "did you mean 'input'?"),
        ("${node.a.output}", 2, "unknown source 'node'", "did you mean 'nodes'?"),
        ("hello ${input.x", 6, "unclosed '${'", None),
        ("${input.x | 'abc}", 12, "unclosed ' string", None),
        ("${input.}", 8, "expected a name after '.'", None),
        ("${input.0}", 8, "expected a name after '.'", "use [0] to index a list"),
        ("${}", 2, "expected a source after '${'", None),
        ("${input.x number}", 10, "expected 'as', '|' or '}'", "write 'as number'"),
        ("${input.x ass text}", 10, "expected 'as', '|' or '}'", "did you mean 'as'?"),
        ("${input.x as}", 12, "expected a type after 'as'", None),
        ("${input.x | }", 12, "expected a default after '|'", None),
        ("${input.x | a|b}", 13, "a default can hold '|' only when quoted", None),
        ('${input.x | "a" b}', 16, "unexpected text after the quoted default", None),
        ("${input[x]}", 8, "expected an index or a quoted key", None),
        ("${input[]}", 8, "expected an index or a quoted key", None),
        ("${input[0}", 9, "expected ']'", None),
        ("${input.x + 1}", 10, "unexpected character '+'", None),
        ("${input.x | a${y}}", 13, "cannot be nested", None),
        ("${input.x | ${y}}", 14, "unknown source 'y'", None),
        ("${input.x as select}", 13, "`select` needs its options", None),
        ("${input.x as select/a,,b}", 20, "`select` needs its options", None),
        ("${input.x as number/a}", 20, "'number' takes no subtype", None),
        ("${input.x as image;gzip}", 19, "unknown format 'gzip'", None),
        ("${input.x as stream/yaml}", 13, "unknown type 'stream/yaml'", None),
        ("${input.x @(description}", 10, "unclosed '@(' annotation", None),
        ("${input.x @()}", 10, "an empty annotation", None),
        ("${input.x | [1, 2}", 17, "unexpected '}' in the default", None),
        ("${input.x as number | hot}", 22, "the default 'hot' is not a valid number", None),
        ("${input.x as integer | 1.5}", 23, "not a valid integer", None),
        ("a ${input.x as stream/text}", 2, "can only be used when the template is the whole value", None),
    ],
)
def test_syntax_errors(text: str, offset: int, message: str, hint: str | None) -> None:
    with pytest.raises(TemplateError) as info:
        parse(text)
    error = info.value
    assert error.template == text
    assert error.offset == offset
    assert message in error.message
    if hint is not None:
        assert error.hint == hint
        assert hint in str(error)


def test_error_message_reads_well() -> None:
    with pytest.raises(TemplateError) as info:
        parse("${input.x as nubmer}")
    assert str(info.value) == "unknown type 'nubmer' (did you mean 'number'?)"
