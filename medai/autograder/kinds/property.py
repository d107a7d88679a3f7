"""``kind: property``: values that must have a property (no reference answer to compare with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medai.autograder.kinds.base import Kind, say


class PropertyKind(Kind):
    name = "property"

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
