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
drawn at random by `weight` (`mode: random`, model-compose's random-router). The nodes
named in the chosen case's `to:` run; every other node named in any `to:`/`default` is
skipped, and so is what depends only on skipped nodes (see docs/dag.md for joins). The
output is `{"case": NAME, "to": [NODE, ...], "value": VALUE}`, NAME being the case's
`name:` or its position (`default` for the default).
"""

from __future__ import annotations

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
    template_fields: ClassVar[tuple[str, ...]] = (*RunNodeSpec.template_fields, "value", "cases")
    mappable: ClassVar[bool] = False

    type: Literal["switch"]
    #: what the cases compare (default: nothing; cases then use `when:`)
    value: Any = None
    cases: list[SwitchCase]
    #: where to go when no case holds; without it that fails the run
    default: SwitchDefault | None = None
    mode: Literal["first", "random"] = "first"

    @field_validator("default", mode="before")
    @classmethod
    def _default_shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, list)):
            return {"to": value}
        return value

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
            if cases and sum(weights) > 0:
                chosen = random.choices(range(len(cases)), weights=weights)[0]
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
