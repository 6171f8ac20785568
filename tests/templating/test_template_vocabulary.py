"""model-compose's template vocabulary: select options, annotations, projections, lists,
`[*]` paths, media and base64 values, stream formats and fallback references."""

from __future__ import annotations

import pytest

from flowctl.engine.errors import CastError, InputError, MissingValueError, TemplateError
from flowctl.engine.templating import infer_inputs, json_schema_for_inputs, parse, validate_inputs


def test_select_lets_only_its_options_through() -> None:
    template = parse("${input.model as select/gpt-4o,gpt-4o-mini | gpt-4o}")
    assert template.render({"input": {}}) == "gpt-4o"
    assert template.render({"input": {"model": "gpt-4o-mini"}}) == "gpt-4o-mini"
    with pytest.raises(CastError) as info:
        template.render({"input": {"model": "gpt-5"}})
    assert "not one of: gpt-4o, gpt-4o-mini" in str(info.value)


def test_select_default_outside_its_options_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="not a valid"):
        parse("${input.size as select/256x256,512x512 | 1024x1024}")


def test_select_input_becomes_an_enum_and_a_4xx_naming_the_options() -> None:
    refs = parse("${input.size as select/256x256,512x512 | 512x512 @(description Image size)}").references
    inputs = infer_inputs(refs)
    schema = json_schema_for_inputs(inputs)["properties"]["size"]
    assert schema == {"type": "string", "enum": ["256x256", "512x512"], "default": "512x512", "description": "Image size"}
    assert validate_inputs(inputs, {"size": "256x256"})["size"] == "256x256"
    with pytest.raises(InputError) as info:
        validate_inputs(inputs, {"size": "huge"})
    assert info.value.field == "size"
    assert "not one of: 256x256, 512x512" in str(info.value)


def test_plain_use_and_select_of_one_input_agree() -> None:
    refs = parse("${input.lang} / ${input.lang as select/ko,en}").references
    assert json_schema_for_inputs(infer_inputs(refs))["properties"]["lang"]["enum"] == ["ko", "en"]


def test_two_different_selects_conflict() -> None:
    refs = parse("${input.lang as select/ko,en} ${input.lang as select/ja}").references
    with pytest.raises(TemplateError, match="is used as select/ko,en"):
        infer_inputs(refs)


def test_annotations_do_not_change_the_value() -> None:
    template = parse("${input.path | . @(description Directory (relative) to list)}")
    (ref,) = template.references
    assert ref.annotations == (("description", "Directory (relative) to list"),)
    assert template.render({"input": {}}) == "."
    assert parse("${input.n as integer @(description A count)}").render({"input": {"n": "3"}}) == 3
    several = parse("${input.q @(description Query) @(example cats)}").references[0]
    assert several.annotation("example") == "cats"


def test_object_projection_keeps_named_paths() -> None:
    template = parse("${response.items as object[]/id.videoId,snippet.title}")
    items = [{"id": {"videoId": "v1"}, "snippet": {"title": "T1", "other": 1}}, {"id": {}, "snippet": {"title": "T2"}}]
    assert template.render({"response": {"items": items}}) == [{"videoId": "v1", "title": "T1"}, {"videoId": None, "title": "T2"}]
    assert parse("${response as object/a}").render({"response": {"a": 1, "b": 2}}) == {"a": 1}


def test_list_of_a_type_casts_each_item() -> None:
    assert parse("${input.xs as integer[]}").render({"input": {"xs": ["1", 2.0]}}) == [1, 2]
    with pytest.raises(CastError, match=r"input.xs\[1\]"):
        parse("${input.xs as integer[]}").render({"input": {"xs": [1, "two"]}})
    refs = parse("${input.xs as number[]}").references
    assert json_schema_for_inputs(infer_inputs(refs))["properties"]["xs"] == {"type": "array", "items": {"type": "number"}}


def test_wildcard_reads_a_path_from_every_item() -> None:
    template = parse("${response.data[*].url}")
    assert template.render({"response": {"data": [{"url": "a"}, {"b": 1}, {"url": "c"}]}}) == ["a", None, "c"]
    assert parse("${response.rows[*].cells[0]}").render({"response": {"rows": [{"cells": [1, 2]}]}}) == [1]
    assert parse("${response.data[*].url}").references[0].dotted == "response.data[*].url"
    with pytest.raises(MissingValueError):
        parse("${response.data[*].url}").render({"response": {"data": "not a list"}})


@pytest.mark.parametrize(
    ("type_text", "value", "expected"),
    [
        ("image", "https://example.com/cat.png", "https://example.com/cat.png"),
        ("image;url", "https://example.com/cat.png", "https://example.com/cat.png"),
        ("audio/mp3;base64", b"\x00\x01", "AAE="),
        ("audio", b"\x00\x01", "AAE="),
        ("image/png;data-uri", b"\x00\x01", "data:image/png;base64,AAE="),
        ("base64", b"hi", "aGk="),
        ("base64", "data:image/png;base64,AAE=", "AAE="),
        ("base64", "AAE=", "AAE="),
        ("markdown", "# Title", "# Title"),
        ("any", {"a": [1]}, {"a": [1]}),
    ],
)
def test_media_and_encoded_values(type_text: str, value: object, expected: object) -> None:
    assert parse(f"${{response as {type_text}}}").render({"response": value}) == expected


def test_media_rejects_what_is_not_a_media_value() -> None:
    with pytest.raises(CastError, match="an image"):
        parse("${input.picture as image}").render({"input": {"picture": {"x": 1}}})


def test_media_input_schema_names_its_type() -> None:
    schema = json_schema_for_inputs(infer_inputs(parse("${input.photo as image/png}").references))
    assert schema["properties"]["photo"] == {"type": "string", "contentMediaType": "image/png", "x-flowctl-media": "image"}
    assert json_schema_for_inputs(infer_inputs(parse("${input.clip as audio}").references))["properties"]["clip"]["contentMediaType"] == "audio/*"


def test_output_stream_formats_parse() -> None:
    (ref,) = parse("${response as text;sse-text}").references
    assert ref.type == "text" and ref.spec is not None and ref.spec.stream_format == "stream/text"
    assert parse("${response as stream}").references[0].type == "stream/text"
    assert parse("${response as stream/json}").references[0].type == "stream/json"


def test_fallback_reference_default() -> None:
    template = parse("${input.channel | ${env.DEFAULT_CHANNEL}}")
    assert template.render({"input": {"channel": "c1"}, "env": {}}) == "c1"
    assert template.render({"input": {}, "env": {"DEFAULT_CHANNEL": "c0"}}) == "c0"
    with pytest.raises(MissingValueError, match="env.DEFAULT_CHANNEL"):
        template.render({"input": {}, "env": {}})
    chain = parse("${input.a as integer | ${input.b | 7}}")
    assert chain.render({"input": {"b": "3"}}) == 3
    assert chain.render({"input": {}}) == 7
    assert [r.dotted for r in chain.references] == ["input.a", "input.b"]


def test_an_input_read_only_as_a_fallback_is_optional() -> None:
    inputs = infer_inputs(parse("${input.a | ${input.b}}").references)
    assert not inputs["a"].required and not inputs["b"].required
