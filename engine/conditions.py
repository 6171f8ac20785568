"""Conditions: what `when:`, a switch's cases and a map's `where:` are written in.

A condition is either one template (its value read as a truth value) or a small tree of
comparisons. No `eval`: the operators are a fixed list, compared on values that are
already rendered.

    >>> holds("yes"), holds(""), holds([])
    (True, False, False)
    >>> holds({"value": 3, "gt": 2})
    True
    >>> holds({"all": [{"value": "fr", "in": ["fr", "de"]}, {"not": {"value": "", "equals": "x"}}]})
    True
    >>> holds({"equals": "code"}, subject="code")   # a switch case compares the switch's `value`
    True

Truth of a plain value (`truthy`): null, false, 0, "" and empty lists/objects are false; a
string that spells a boolean (`true/false/yes/no/on/off/1/0`, any case) is that boolean;
any other string is true.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .templating.cast import to_text

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _FALSE:
            return False
        return True
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, (list, tuple, Mapping)):
        return len(value) > 0
    return True


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(left: Any, right: Any) -> bool:
    """Equal as written: `3` equals `"3"` and `3.0` (a number read from a template and one
    typed in YAML should compare equal); otherwise plain equality."""
    if left == right:
        return True
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    if isinstance(left, str) != isinstance(right, str) and not isinstance(left, (dict, list)) and not isinstance(right, (dict, list)):
        return to_text(left) == to_text(right)
    return False


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(left: Any, right: Any) -> bool:
        a, b = _number(left), _number(right)
        if a is not None and b is not None:
            return op(a, b)
        if isinstance(left, str) and isinstance(right, str):
            return op(left, right)
        return False

    return compare


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return to_text(item) in container
    if isinstance(container, (list, tuple)):
        return any(_equal(x, item) for x in container)
    if isinstance(container, Mapping):
        return to_text(item) in container
    return False


def _member(item: Any, options: Any) -> bool:
    if isinstance(options, (list, tuple)):
        return any(_equal(item, x) for x in options)
    return _contains(options, item)


_MATCH_CACHE: dict[str, re.Pattern[str]] = {}


def _matches(value: Any, pattern: Any) -> bool:
    compiled = _MATCH_CACHE.get(pattern)
    if compiled is None:
        compiled = _MATCH_CACHE[pattern] = re.compile(pattern)
    return value is not None and compiled.search(to_text(value)) is not None


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": _equal,
    "not_equals": lambda a, b: not _equal(a, b),
    "in": _member,
    "not_in": lambda a, b: not _member(a, b),
    "gt": _ordered(lambda a, b: a > b),
    "gte": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "lte": _ordered(lambda a, b: a <= b),
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
    "starts_with": lambda a, b: a is not None and to_text(a).startswith(to_text(b)),
    "ends_with": lambda a, b: a is not None and to_text(a).endswith(to_text(b)),
    "matches": _matches,
}

_COMBINATORS = ("all", "any", "not")
_NO_SUBJECT = object()


def holds(condition: Any, subject: Any = _NO_SUBJECT) -> bool:
    """Evaluate a rendered condition. `subject` is what an operator compares when the
    condition names no `value:` (a switch's value; a map's current item)."""
    if not isinstance(condition, Mapping):
        return truthy(condition)
    if "all" in condition:
        return all(holds(c, subject) for c in condition["all"])
    if "any" in condition:
        return any(holds(c, subject) for c in condition["any"])
    if "not" in condition:
        return not holds(condition["not"], subject)
    left = condition["value"] if "value" in condition else (None if subject is _NO_SUBJECT else subject)
    for name, operator in OPERATORS.items():
        if name in condition:
            return operator(left, condition[name])
    return truthy(left)


class ConditionSpec(BaseModel):
    """One comparison (`value` against an operator) or a combination of conditions.

    `value` is what is compared (default: the switch's value, or a map's current item);
    exactly one operator, or exactly one of `all`/`any`/`not`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    value: Any = None
    equals: Any = None
    not_equals: Any = None
    in_: Any = Field(default=None, alias="in")
    not_in: Any = None
    gt: Any = None
    gte: Any = None
    lt: Any = None
    lte: Any = None
    contains: Any = None
    not_contains: Any = None
    starts_with: Any = None
    ends_with: Any = None
    #: a regular expression searched in the value as text; written in the flow, never
    #: taken from a request (a template here is an error)
    matches: str | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _one_test(self) -> ConditionSpec:
        written = self.model_fields_set
        ops = [name for name in OPERATORS if _field(name) in written]
        combos = [name for name in _COMBINATORS if _field(name) in written]
        if len(ops) + len(combos) > 1:
            raise ValueError(f"a condition holds one test; this one has {', '.join(ops + combos)}")
        if combos and "value" in written:
            raise ValueError(f"`value` does not go with `{combos[0]}`")
        if "matches" in written and self.matches is not None:
            if "${" in self.matches:
                raise ValueError("`matches` takes a pattern written in the flow, not a template")
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"`matches` is not a valid regular expression: {exc}") from None
        return self


def _field(name: str) -> str:
    return {"in": "in_", "not": "not_"}.get(name, name)


#: a condition as written in a flow: a template or literal (read as a truth value), or a tree
Condition = str | bool | int | float | None | ConditionSpec
ConditionSpec.model_rebuild()


def plain(value: Any) -> Any:
    """A validated spec value back as plain data, with the flow's own key names (`in`,
    `not`) and only the keys that were written: ready to be compiled as a template tree."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_unset=True)
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


__all__ = ["OPERATORS", "Condition", "ConditionSpec", "holds", "plain", "truthy"]
