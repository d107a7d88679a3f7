"""``kind: property``: values that must have a property (no reference answer to compare with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from medai.autograder.kinds.base import Kind, say
from medai.autograder.tasks import _Strict


class PropertyTask(_Strict):
    kind: Literal["property"]
    property: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> PropertyTask:
        from medai.autograder.properties import PROPERTIES

        if self.property not in PROPERTIES:
            raise ValueError(f"unknown property '{self.property}'; known: {sorted(PROPERTIES)}")
        model = PROPERTIES[self.property].params
        try:
            model.model_validate(self.params)
        except ValidationError as exc:
            errs = "; ".join(
                f"params.{'.'.join(str(p) for p in e['loc']) or '(all)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ValueError(f"bad params for property '{self.property}': {errs}") from None
        return self


class PropertyKind(Kind):
    name = "property"
    model = PropertyTask

    def check(self, task_id: str, task: Any, value: Any, extra: tuple) -> bool:
        from medai.autograder import plain
        from medai.autograder.properties import evaluate, to_plain_args

        try:  # the same plain round trip as when graded, so the verdict is the same
            values = plain.decode(plain.encode(to_plain_args((value, *extra))))
        except plain.PlainError as exc:
            return say(False, task_id, f"this value cannot be graded: {exc}")
        frac, msg = evaluate(task.property, values, task.params)
        return say(frac >= 1.0, task_id, msg + ("" if frac >= 1.0 else f" (score {frac:.0%})"))

    def record(self, task_id: str, task: Any, value: Any, extra: tuple, inputs_dir: Path) -> Any:
        from medai.autograder.properties import to_plain_args

        return to_plain_args((value, *extra))

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        from medai.autograder.scoring import score_property

        return score_property(task, got)
