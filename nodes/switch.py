"""switch: route a run to one of several branches.

    route:
      type: switch
      value: ${input.kind}
      cases:
        - {equals: code, to: coder}            # compares `value`
        - {in: [poem, song], to: [poet]}
        - {when: "${input.urgent as boolean | false}", to: fast}
      default: chat                            # when no case holds (else the run fails)

Cases are tried in order and the first that holds wins (`mode: first`), or one case is
drawn at random by `weight` (`mode: random`, model-compose's random-router). With `sticky:`
(a template: a session id, a user), the draw is the same for the same value: each case
scores `-ln(u) / weight`, `u` from a SHA-256 of `salt` (default: the node's id), the value
and the case (weighted rendezvous hashing, as model-compose's `session:` does), and the
lowest score wins; so a value keeps its case while the weights change, except the share a
changed weight moves. A null or empty value draws at random. The nodes
named in the chosen case's `to:` run; every other node named in any `to:`/`default` is
skipped, and so is what depends only on skipped nodes (see docs/dag.md for joins). The
output is `{"case": NAME, "to": [NODE, ...], "value": VALUE}`, NAME being the case's
`name:` or its position (`default` for the default).
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..engine.conditions import Condition, ConditionSpec, holds
from ..engine.errors import RunError
from .base import Chunks, RunContext, RunNodeSpec


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


class SwitchCase(ConditionSpec):
    """A case: a comparison against the switch's `value` (or a `when:` condition), and the
    node(s) it routes to."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    to: list[str]
    name: str | None = None
    #: a condition that does not compare the switch's value
    when: Condition = None
    #: relative chance in `mode: random`
    weight: float = 1.0

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value) if isinstance(value, (str, list)) else value

    @property
    def has_test(self) -> bool:
        return bool(self.model_fields_set - {"to", "name", "weight"})


class SwitchDefault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    to: list[str]

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value) if isinstance(value, (str, list)) else value


class SwitchSpec(RunNodeSpec):
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "value", "cases", "sticky")
    mappable: ClassVar[bool] = False

    type: Literal["switch"]
    #: what the cases compare (default: nothing; cases then use `when:`)
    value: Any = None
    cases: list[SwitchCase]
    #: where to go when no case holds; without it that fails the run
    default: SwitchDefault | None = None
    mode: Literal["first", "random"] = "first"
    #: `mode: random` only: the same value always draws the same case (a template)
    sticky: Any = None
    #: keeps this switch's sticky draws apart from another's over the same values
    salt: str | None = None

    @field_validator("default", mode="before")
    @classmethod
    def _default_shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, list)):
            return {"to": value}
        return value

    @model_validator(mode="after")
    def _sticky_needs_random(self) -> SwitchSpec:
        if self.mode != "random" and ({"sticky", "salt"} & self.model_fields_set):
            raise ValueError("`sticky:` and `salt:` go with `mode: random`")
        return self

    @model_validator(mode="after")
    def _cases_have_tests(self) -> SwitchSpec:
        if self.mode == "first":
            for index, case in enumerate(self.cases):
                if not case.has_test:
                    raise ValueError(f"case {index} has no test (an operator such as `equals:`, or `when:`); with `mode: first` it could never be chosen")
        return self

    def route_targets(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """Every node this switch may route to, in the order written, with where it is named."""
        named: list[tuple[str, tuple[str | int, ...]]] = []
        for index, case in enumerate(self.cases):
            named += [(node, ("cases", index, "to")) for node in case.to]
        if self.default is not None:
            named += [(node, ("default",)) for node in self.default.to]
        return named


class SwitchNode:
    def __init__(self, spec: SwitchSpec) -> None:
        self.spec = spec

    async def run(self, ctx: RunContext) -> Chunks:
        spec = self.spec
        subject = ctx.resolve("value")
        cases = ctx.resolve("cases")  # rendered: only the keys written, with the flow's names
        chosen: int | None = None
        if spec.mode == "random":
            weights = [case.weight for case in spec.cases]
            key = ctx.resolve("sticky")
            if cases and sum(weights) > 0:
                if key is None or key == "":
                    chosen = random.choices(range(len(cases)), weights=weights)[0]
                else:
                    chosen = sticky_choice(spec.salt or ctx.node_id, str(key), [(case.name or str(i), case.weight) for i, case in enumerate(spec.cases)])
        else:
            for index, case in enumerate(cases):
                test = {k: v for k, v in case.items() if k not in ("to", "name", "weight", "when")}
                if "when" in case and not holds(case["when"], subject):
                    continue
                if test and not holds(test, subject):
                    continue
                chosen = index
                break
        if chosen is None:
            if spec.default is None:
                shown = repr(subject) if len(repr(subject)) < 80 else repr(subject)[:77] + "..."
                raise RunError(ctx.node_id, f"no case holds for {shown} and there is no `default`", hint="add `default: NODE`, or a case for this value")
            name, targets = "default", spec.default.to
        else:
            case_spec = spec.cases[chosen]
            name, targets = case_spec.name or str(chosen), case_spec.to
        ctx.choose(targets)
        yield {"case": name, "to": list(targets), "value": subject}


def sticky_choice(salt: str, key: str, cases: list[tuple[str, float]]) -> int:
    """The case `key` always draws among `cases` (name, weight): weighted rendezvous hashing.

    >>> sticky_choice("s", "user-1", [("a", 1), ("b", 1)]) == sticky_choice("s", "user-1", [("a", 1), ("b", 1)])
    True
    """
    best, best_score = 0, math.inf
    for index, (name, weight) in enumerate(cases):
        if weight <= 0:
            continue
        digest = hashlib.sha256(f"{salt}\x00{key}\x00{name}".encode()).digest()
        u = (int.from_bytes(digest[:8], "big") + 1) / (2**64 + 1)  # in (0, 1): ln never sees 0
        score = -math.log(u) / weight
        if score < best_score:
            best, best_score = index, score
    return best
