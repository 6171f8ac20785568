"""Turn the text of a default into a value, by the YAML 1.2 core schema.

Plain (unquoted) text resolves the way YAML 1.2 resolves a plain scalar: `null`/`~` is
None, `true`/`false` are booleans, `512` and `0x1f` are ints, `0.7`, `1e3` and `.inf` are
floats, anything else is the text itself (`hello world`). Quoted text is always a string.
A default that starts with `[` or `{` is a YAML flow collection (`| []`, `| {"a": 1}`).

    >>> resolve_plain("0.7"), resolve_plain("yes"), resolve_plain("~")
    (0.7, 'yes', None)
"""

from __future__ import annotations

import re
from typing import Any

_NULL = frozenset({"null", "Null", "NULL", "~"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INT = re.compile(r"[-+]?[0-9]+")
_OCT = re.compile(r"0o[0-7]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")


def resolve_plain(text: str) -> Any:
    """The value of a plain YAML scalar (already stripped of surrounding spaces)."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.fullmatch(text):
        return int(text)
    if _OCT.fullmatch(text):
        return int(text[2:], 8)
    if _HEX.fullmatch(text):
        return int(text[2:], 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text


def load_flow(text: str) -> Any:
    """Load a YAML flow collection (`[...]` or `{...}`); raises ValueError if it is not one."""
    from io import StringIO

    from ruamel.yaml.error import YAMLError

    from ..loader import bounded_yaml

    try:
        value = bounded_yaml("safe").load(StringIO(text))
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(problem) from None
    if not isinstance(value, (dict, list)):
        raise ValueError("not a list or mapping")
    return value
