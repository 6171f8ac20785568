"""Templating: `${source.path as type | default}` inside flow values.

A real little language: `lexer` → `parser` → `ast` → `evaluate`, with `cast` for the
`as` types, `value` for whole YAML trees and `infer` for workflow inputs. No regexes over
the template, no Python `eval`. See SPEC §4.

    >>> from flowctl.engine.templating import parse, compile_value
    >>> parse("${input.temperature as number | 0.7}").render({"input": {}})
    0.7
    >>> parse("${nodes.vllm.output.host}:${nodes.vllm.output.port}").render(
    ...     {"nodes": {"vllm": {"output": {"host": "localhost", "port": 8000}}}})
    'localhost:8000'
    >>> compile_value({"messages": [{"role": "user", "content": "${input.prompt}"}]}).render(
    ...     {"input": {"prompt": "hi"}})
    {'messages': [{'role': 'user', 'content': 'hi'}]}

Errors: `TemplateError` (syntax, with `.template` and `.offset`), `MissingValueError`
(a path that is not there, no default), `CastError` (a value that is not the `as` type),
all from `flowctl.engine.errors`.
"""

from .ast import NO_DEFAULT, SOURCES, TYPES, Reference
from .cast import cast, to_json, to_text
from .evaluate import MISSING, SKIPPED, Template, parse, path_walker
from .infer import InferredInput, infer_inputs, json_schema_for_inputs, validate_inputs
from .value import CompiledValue, compile_value, find_template_errors

__all__ = [
    "NO_DEFAULT",
    "SKIPPED",
    "SOURCES",
    "TYPES",
    "CompiledValue",
    "InferredInput",
    "MISSING",
    "Reference",
    "Template",
    "cast",
    "compile_value",
    "find_template_errors",
    "infer_inputs",
    "json_schema_for_inputs",
    "parse",
    "path_walker",
    "to_json",
    "to_text",
    "validate_inputs",
]
