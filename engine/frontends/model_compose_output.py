"""model-compose's job/workflow `output:` expressions, read just far enough to lower them.

model-compose writes what a workflow returns as one template over the job's result:
`${output}`, `${output.choices[0].message.content}`, `${output as text;sse-text}` (a text
stream sent as SSE), `${output as text;sse-json}`, or `${jobs.<id>.output ...}`. flowctl also
accepts its own spelling `${output as stream/text}` / `stream/json`. Anything else (a mapping
of several fields, a default, other formats) is not lowered and is reported.

    >>> parse_output("${output as text;sse-text}")
    OutputExpr(job=None, path='', type='text', stream='text')
    >>> parse_output("${ jobs.chat.output.choices[0] as json }")
    OutputExpr(job='chat', path='.choices[0]', type='json', stream=None)
    >>> parse_output("${output as stream/json}").stream
    'json'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: `;format` suffixes (model-compose's WorkflowVariableFormat) that make the output a stream
_STREAM_FORMATS = {"sse-text": "text", "sse-json": "json", "stream": "text"}
_STREAM_TYPES = {"stream/text": "text", "stream/json": "json", "stream": "text"}


@dataclass(frozen=True)
class OutputExpr:
    #: `jobs.<id>.output` names a job; plain `output` is the (only) job's output
    job: str | None
    #: the rest of the path after `output`, as written: '', '.a.b', '[0].c'
    path: str
    #: the `as` type without its format (None when not given)
    type: str | None
    #: 'text' or 'json' when the output is streamed, else None
    stream: str | None

    @property
    def is_identity(self) -> bool:
        return not self.path and self.type is None and self.stream is None


class OutputSyntaxError(ValueError):
    """The value is not one `${output...}` expression flowctl can lower; the message says why."""


def parse_output(value: Any) -> OutputExpr:
    if not isinstance(value, str):
        raise OutputSyntaxError("a workflow output that is a mapping or list of values is not supported by flowctl yet")
    text = value.strip()
    if not (text.startswith("${") and text.endswith("}")) or text.count("${") != 1:
        raise OutputSyntaxError("flowctl supports an output that is one `${output...}` expression")
    inner = text[2:-1].strip()
    if "|" in inner:
        raise OutputSyntaxError("a default (`| ...`) on a workflow output is not supported by flowctl yet")
    reference, _, type_text = inner.partition(" as ")
    reference = reference.strip()
    job: str | None = None
    if reference.startswith("jobs."):
        job, dot, rest = reference[len("jobs."):].partition(".")
        if not job or not dot or not rest.startswith("output"):
            raise OutputSyntaxError("write `${jobs.<job id>.output...}`")
        reference = rest
    if not reference.startswith("output") or (reference[6:] and reference[6] not in ".["):
        raise OutputSyntaxError("flowctl supports an output that reads `${output...}` or `${jobs.<id>.output...}`")
    path = reference[len("output"):]
    type_name, stream = _type(type_text.strip()) if type_text else (None, None)
    return OutputExpr(job=job, path=path, type=type_name, stream=stream)


def _type(text: str) -> tuple[str | None, str | None]:
    type_name, semicolon, fmt = (part.strip() for part in text.partition(";"))
    if type_name in _STREAM_TYPES:
        if semicolon:
            raise OutputSyntaxError(f"'{type_name}' takes no `;format`")
        return None, _STREAM_TYPES[type_name]
    if not semicolon:
        return type_name or None, None
    if fmt in _STREAM_FORMATS:
        stream = _STREAM_FORMATS[fmt]
        return type_name or None, stream
    raise OutputSyntaxError(f"output format '{fmt}' is not supported by flowctl yet (supported: sse-text, sse-json)")


def literal(value: Any) -> Any:
    """`value` with every `${` written `$${`, so flowctl's templating leaves it as it is,
    except `${env.NAME}`: model-compose fills those in everywhere when it loads a file, and
    flowctl's service nodes read `env` too. A shell `${HOME}` in an install script must reach
    bash untouched.

    >>> literal(["bash", "-c", "echo ${HOME} ${env.TOKEN}"])
    ['bash', '-c', 'echo $${HOME} ${env.TOKEN}']
    """
    if isinstance(value, str):
        return _NOT_ENV.sub("$${", value)
    if isinstance(value, list):
        return [literal(item) for item in value]
    if isinstance(value, dict):
        return {key: literal(item) for key, item in value.items()}
    return value


_NOT_ENV = re.compile(r"\$\{(?!\s*env\.)")
