"""Inputs inferred from `${input.x as T | d}`: schema and validation of a run's input."""

from __future__ import annotations

import pytest

from flowctl.engine.errors import InputError, TemplateError
from flowctl.engine.templating import NO_DEFAULT, InferredInput, compile_value, infer_inputs, json_schema_for_inputs, parse, validate_inputs


def refs(*texts: str):
    return [r for text in texts for r in parse(text).references]


def test_infers_name_type_default_and_required() -> None:
    inputs = infer_inputs(
        refs(
            "${input.prompt}",
            "${input.temperature as number | 0.7}",
            "${input.max_tokens as integer | 512}",
            "${input.stream as boolean | false}",
            "${input.model | gpt-4o}",
            "${env.HOME} ${nodes.a.output} ${run.id}",
        )
    )
    assert list(inputs) == ["prompt", "temperature", "max_tokens", "stream", "model"]
    assert inputs["prompt"] == InferredInput("prompt", "text", NO_DEFAULT, True)
    assert inputs["temperature"] == InferredInput("temperature", "number", 0.7, False)
    assert inputs["max_tokens"] == InferredInput("max_tokens", "integer", 512, False)
    assert inputs["stream"] == InferredInput("stream", "boolean", False, False)
    assert inputs["model"] == InferredInput("model", "text", "gpt-4o", False)


def test_untyped_default_implies_the_type() -> None:
    inputs = infer_inputs(refs("${input.t | 0.7}", "${input.on | true}", "${input.stop | []}", "${input.x | null}"))
    assert [inputs[n].type for n in ("t", "on", "stop", "x")] == ["number", "boolean", "list", "text"]
    assert inputs["x"].default is None and not inputs["x"].required


def test_default_is_cast_to_the_type() -> None:
    assert infer_inputs(refs("${input.n as text | 5}"))["n"].default == "5"


def test_deeper_paths_make_an_object_or_list_input() -> None:
    inputs = infer_inputs(refs("${input.cfg.model as text}", "${input.xs[0] | a}", "${input} ${input[0]}"))
    assert inputs["cfg"] == InferredInput("cfg", "object", NO_DEFAULT, True)
    assert inputs["xs"] == InferredInput("xs", "list", NO_DEFAULT, False)
    assert list(inputs) == ["cfg", "xs"]


def test_referenced_twice_prefers_type_and_default() -> None:
    inputs = infer_inputs(refs("${input.t}", "${input.t as number}", "${input.t | 0.5}", "${input.t as number | 0.5}"))
    assert inputs["t"] == InferredInput("t", "number", 0.5, False)
    inputs = infer_inputs(refs("${input.s as string}", "${input.s as text}"))
    assert inputs["s"].type == "text" and inputs["s"].required


def test_conflicting_types_raise() -> None:
    with pytest.raises(TemplateError, match="input 't' is used as number .* and as integer"):
        infer_inputs(refs("${input.t as number}", "x ${input.t as integer}"))


def test_conflicting_defaults_raise() -> None:
    with pytest.raises(TemplateError, match="input 'n' has the default 1 .* and 2"):
        infer_inputs(refs("${input.n | 1}", "${input.n | 2}"))


def test_json_schema() -> None:
    inputs = infer_inputs(
        compile_value(
            {
                "p": "${input.prompt}",
                "t": "${input.t as number | 0.7}",
                "n": "${input.n as integer}",
                "b": "${input.b as boolean | true}",
                "j": "${input.j as json}",
                "o": "${input.o as object}",
                "l": "${input.l as list | []}",
            }
        ).references
    )
    schema = json_schema_for_inputs(inputs)
    assert schema == {
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "t": {"type": "number", "default": 0.7},
            "n": {"type": "integer"},
            "b": {"type": "boolean", "default": True},
            "j": {},
            "o": {"type": "object"},
            "l": {"type": "array", "default": []},
        },
        "required": ["prompt", "n", "j", "o"],
        "additionalProperties": True,
    }


def test_validate_casts_fills_defaults_and_keeps_extras() -> None:
    inputs = infer_inputs(refs("${input.prompt}", "${input.t as number | 0.7}", "${input.n as integer | 1}", "${input.j as json}"))
    given = {"prompt": "hi", "n": "3", "j": None, "extra": [1]}
    assert validate_inputs(inputs, given) == {"prompt": "hi", "t": 0.7, "n": 3, "j": None, "extra": [1]}
    assert given == {"prompt": "hi", "n": "3", "j": None, "extra": [1]}  # not modified
    assert validate_inputs(inputs, {"prompt": 5, "t": None, "j": "[1]"}) == {"prompt": "5", "t": 0.7, "n": 1, "j": [1]}


def test_validate_missing_required_names_the_field() -> None:
    inputs = infer_inputs(refs("${input.prompt}", "${input.t as number | 0.7}"))
    with pytest.raises(InputError) as info:
        validate_inputs(inputs, {"t": 1})
    assert info.value.field == "prompt" and "prompt" in str(info.value)
    with pytest.raises(InputError) as info:
        validate_inputs(inputs, {"prompt": None})
    assert info.value.field == "prompt"


def test_validate_bad_value_names_the_field() -> None:
    inputs = infer_inputs(refs("${input.prompt}", "${input.temperature as number | 0.7}"))
    with pytest.raises(InputError) as info:
        validate_inputs(inputs, {"prompt": "x", "temperature": "hot"})
    assert info.value.field == "temperature"
    assert str(info.value) == "input 'temperature': 'hot' is not a valid number"


def test_validated_input_renders() -> None:
    compiled = compile_value({"temperature": "${input.temperature}", "prompt": "${input.prompt}"})
    inputs = infer_inputs(compiled.references)
    inputs = {**inputs, "temperature": InferredInput("temperature", "number", 0.7, False)}
    assert compiled.render({"input": validate_inputs(inputs, {"prompt": "p"})}) == {"temperature": 0.7, "prompt": "p"}
