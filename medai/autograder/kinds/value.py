"""``kind: value``: one value, compared with the reference solution's within a tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from medai.autograder.kinds.base import Kind, say
from medai.autograder.tasks import PublicShape, Tolerance, _Strict


class ValueTask(_Strict):
    kind: Literal["value"]
    tolerance: Tolerance = Tolerance()
    public: PublicShape = PublicShape()


class ValueKind(Kind):
    name = "value"
    model = ValueTask

    def check(self, task_id: str, task: Any, value: Any, extra: tuple) -> bool:
        import numpy as np

        from medai.autograder import plain

        want = task.public
        types = {
            "float": (float, np.floating, int, np.integer),
            "int": (int, np.integer),
            "bool": (bool, np.bool_),
            "str": (str,),
            "array": (np.ndarray,),
        }
        if want.type == "series":
            import pandas as pd

            types["series"] = (pd.Series,)
        if want.type and not isinstance(value, types[want.type]):
            return say(False, task_id, f"expected a {want.type}, got {type(value).__name__}")
        if isinstance(value, bool | np.bool_) and want.type in ("float", "int"):
            return say(False, task_id, f"expected a {want.type}, got a bool")
        try:
            plain.encode(value)
        except plain.PlainError as exc:
            return say(False, task_id, f"this value cannot be graded: {exc}")
        if want.min is not None or want.max is not None:
            arr = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(arr)):
                return say(False, task_id, "the value is not finite")
            lo = -np.inf if want.min is None else want.min
            hi = np.inf if want.max is None else want.max
            if arr.min() < lo or arr.max() > hi:
                return say(False, task_id, f"expected values between {lo} and {hi}")
        return say(True, task_id, "has the right form; the grader compares it with the reference")

    def record(self, task_id: str, task: Any, value: Any, extra: tuple, inputs_dir: Path) -> Any:
        return value

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        from medai.autograder.scoring import score_value

        return score_value(task, expected, got)

    def report(self, task: Any, expected: Any, state: Any) -> Any:
        return None  # the reference value is the answer
