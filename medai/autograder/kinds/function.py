"""``kind: function``: a function, called on grader-drawn inputs and compared case by case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from medai.autograder.kinds.base import Kind, Prepared, Preparing, describe, say
from medai.autograder.tasks import ArgSpec, Example, Tolerance, _Strict


def draw(spec: Any, rng: Any) -> Any:
    """One argument drawn as its ``ArgSpec`` says (uniform, integers or a choice)."""
    if spec.uniform is not None:
        x = float(rng.uniform(*spec.uniform))
        return round(x, spec.decimals) if spec.decimals is not None else x
    if spec.integers is not None:
        return int(rng.integers(spec.integers[0], spec.integers[1] + 1))
    return spec.choice[int(rng.integers(len(spec.choice)))]


def hidden_cases(source: str) -> list[dict]:
    """``HIDDEN_CASES = [...]`` inside a check cell's hidden-test block, read as a literal.

    The block is parsed, never executed, and never reaches a sandbox except as inputs.
    """
    import ast
    import re

    from medai.autograder import GradingError

    cases: list[dict] = []
    for block in re.findall(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", source, re.S):
        try:
            tree = ast.parse(block)
        except SyntaxError as exc:
            raise GradingError(f"hidden tests block is not valid Python: {exc}") from None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "HIDDEN_CASES" for t in node.targets
            ):
                value = ast.literal_eval(node.value)
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise GradingError("HIDDEN_CASES must be a list of keyword-argument dicts")
                cases += value
    return cases


class FunctionTask(_Strict):
    kind: Literal["function"]
    args: dict[str, ArgSpec] = Field(description="Keyword arguments the grader draws.")
    n_cases: int = Field(40, ge=1, le=10_000)
    examples: list[Example] = Field(default_factory=list, description="Public worked examples.")
    tolerance: Tolerance = Tolerance()
    partial: bool = Field(True, description="Credit the share of cases right (else all or none).")


class FunctionKind(Kind):
    name = "function"
    model = FunctionTask

    def check(self, task_id: str, task: Any, fn: Any, extra: tuple) -> bool:
        from medai.autograder import plain
        from medai.autograder.scoring import values_match

        if not callable(fn):
            return say(False, task_id, f"expected a function, got {type(fn).__name__}")
        problems = []
        for ex in task.examples:
            try:
                got = fn(**ex.args)
            except Exception as exc:
                problems.append(f"{ex.args} raised {describe(exc)}")
                continue
            try:
                match = values_match(ex.expect, plain.decode(plain.encode(got)), task.tolerance)
            except plain.PlainError as exc:
                problems.append(f"{ex.args} returned something ungradable: {exc}")
                continue
            if not match:
                problems.append(f"{ex.args}: expected {ex.expect!r}, got {got!r}")
        if problems:
            return say(False, task_id, "; ".join(problems))
        return say(
            True, task_id, f"{len(task.examples)} worked example(s) right; the grader tries more"
        )

    def record(self, task_id: str, task: Any, fn: Any, extra: tuple, inputs_dir: Path) -> Any:
        from medai.autograder import plain

        if not callable(fn):
            raise TypeError(f"expected a function, got {type(fn).__name__}")
        cases = json.loads((inputs_dir / f"{task_id}.json").read_text())
        out: list = []
        for kwargs in cases:
            try:
                out.append(fn(**kwargs))
            except Exception as exc:
                out.append(plain.CaseError(describe(exc)))
        return out

    def prepare(self, task: Any, ctx: Preparing) -> Prepared:
        """Draw the lab's inputs once (secret seed), add the hidden cases; keep them."""
        import hashlib

        import numpy as np

        from medai.autograder.steps.layout import atomic_write

        path = ctx.inputs_dir / f"{ctx.task_id}.json"
        if not path.exists():
            salt = int(hashlib.sha256(ctx.task_id.encode()).hexdigest()[:8], 16)
            rng = np.random.default_rng([ctx.seed, salt])
            cases = [{k: draw(s, rng) for k, s in task.args.items()} for _ in range(task.n_cases)]
            cases += hidden_cases(ctx.cell_source)
            atomic_write(path, json.dumps(cases))
        return Prepared(state=json.loads(path.read_text()))

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        from medai.autograder.scoring import score_function

        return score_function(task, state, expected, got)

    def report(self, task: Any, expected: Any, state: Any) -> Any:
        return None  # the reference results are the answers
