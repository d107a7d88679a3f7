"""``kind: released``: a result the data sandbox released, graded from the sandbox's own record.

The trainee's notebook records only the *id* of a sandbox job (``Result.job``, 16 hex digits).
Every number that is scored comes from trusted places: the job's released output is read from
the sandbox's store (:mod:`medai.sandbox.store`), and what it is compared with is recomputed here,
by the grader, on the private cohort. The job must belong to the trainee being graded, be on the
task's dataset and have been released; a number typed into the notebook, a result computed on the
mock twin, someone else's job or a held or refused job earns nothing, with a message saying why.

Where the sandbox lives: the grading service gets the hub's data root (``<state>/data``,
:attr:`medai.hub.layout.StateLayout.data`) and the sandbox service runs on ``<state>``
(:func:`medai.hub.hubconfig.sandbox_services`), so the sandbox's files are
``SandboxLayout(data_root.parent)`` (:func:`sandbox_layout`).

Two outputs are scored:

- ``output: regression``: the released fit must be of ``y`` on exactly ``x`` with ``family``;
  its coefficient ``coefficient`` must have the sign of the grader's refit on the whole private
  cohort (statsmodels, the library the sandbox fits with) and lie within ``tolerance`` of it
  (full marks), or have the right sign only (``sign_only_fraction``).
- ``output: table``: the released table must be of ``stat`` of ``value`` by exactly ``by``; every
  released (not suppressed) cell must lie within ``tolerance`` of the grader's own figure.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from medai.autograder.kinds.base import GRADED_STUDENT, Kind, Prepared, Preparing, say
from medai.autograder.tasks import Tolerance, _Strict

if TYPE_CHECKING:
    import pandas as pd

    from medai.sandbox.registry import SandboxLayout

JOB_ID = re.compile(r"[0-9a-f]{16}")


class ReleasedTask(_Strict):
    kind: Literal["released"]
    dataset: str = Field(description="The sandboxed dataset the job must have run on.")
    output: Literal["regression", "table"]
    # regression
    y: str | None = None
    x: list[str] = Field(default_factory=list)
    family: Literal["ols", "logit"] = "logit"
    coefficient: str | None = Field(None, description="The coefficient of interest (one of x).")
    sign_only_fraction: float = Field(0.5, ge=0, le=1)
    # table
    by: list[str] = Field(default_factory=list)
    value: str | None = None
    stat: Literal["count", "mean"] = "mean"
    tolerance: Tolerance = Tolerance(abs=0.01, rel=0.0)

    @model_validator(mode="after")
    def _shape(self) -> ReleasedTask:
        if self.output == "regression":
            if not self.y or not self.x or self.coefficient not in self.x:
                raise ValueError("a released regression needs y, x and a coefficient that is in x")
        elif not self.by or (self.stat == "mean" and not self.value):
            raise ValueError("a released table needs by (and value for stat: mean)")
        return self


def sandbox_layout(data_root: Path) -> SandboxLayout:
    """The sandbox's files of the hub whose data root (``<state>/data``) is ``data_root``."""
    from medai.sandbox.registry import SandboxLayout

    return SandboxLayout(Path(data_root).resolve().parent)


def trusted_figures(task: ReleasedTask, private: pd.DataFrame) -> dict:
    """What the released output is compared with, computed on the private cohort (grader side)."""
    if task.output == "regression":
        import statsmodels.api as sm

        exog = sm.add_constant(private[task.x].astype(float), has_constant="add")
        fit = sm.Logit if task.family == "logit" else sm.OLS
        res = fit(private[task.y].astype(float), exog).fit(
            **({"disp": 0} if task.family == "logit" else {})
        )
        return {"coef": float(res.params[task.coefficient])}
    grouped = private.groupby(task.by, observed=True)
    stat = grouped.size() if task.stat == "count" else grouped[task.value].mean()
    return {"cells": {tuple(str(k) for k in _key(key)): float(v) for key, v in stat.items()}}


def read_job(store: Path, job: str) -> dict | None:
    """Job ``job`` of the sandbox's store (the ``jobs`` table of :mod:`medai.sandbox.store`),
    read-only: the grader never writes there, and waits for the service's writes to finish."""
    import json
    import sqlite3

    from medai.autograder import GradingError

    try:
        db = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute(
                "SELECT user, dataset, status, rule, output FROM jobs WHERE id=?", (job,)
            ).fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        # not the trainee's fault: the batch records a grader error and grades again later
        raise GradingError(f"cannot read the data sandbox's store {store}: {exc}") from None
    if row is None:
        return None
    user, dataset, status, rule, output = row
    out = json.loads(output) if output else None
    return {"user": user, "dataset": dataset, "status": status, "rule": rule, "output": out}


def _key(key) -> tuple:
    return key if isinstance(key, tuple) else (key,)


def _close(got: float, want: float, tol: Tolerance) -> bool:
    return abs(got - want) <= tol.abs + tol.rel * abs(want)


class ReleasedKind(Kind):
    name = "released"
    model = ReleasedTask

    # -- trainee kernel ------------------------------------------------------------------------

    def check(self, task_id: str, task: Any, value: Any, extra: tuple) -> bool:
        job = getattr(value, "job", value)  # a client Result, or its job id
        if not isinstance(job, str) or not JOB_ID.fullmatch(job):
            return say(
                False,
                task_id,
                "pass the id of your released sandbox job (the `job` of what sb.submit returned, "
                f"16 hex digits), not {type(job).__name__} {str(job)[:40]!r}: the grade is read "
                "from the sandbox's own record of that job",
            )
        status = getattr(value, "status", None)
        if status is not None and status != "released":
            return say(False, task_id, f"this job was {status}: only released results are graded")
        return say(True, task_id, "a job id; the grader reads its released output from the sandbox")

    def record(self, task_id: str, task: Any, value: Any, extra: tuple, inputs_dir: Path) -> Any:
        job = getattr(value, "job", value)
        return job if isinstance(job, str) else None

    # -- trusted grader ------------------------------------------------------------------------

    def prepare(self, task: Any, ctx: Preparing) -> Prepared:
        import pandas as pd

        from medai.autograder import GradingError

        layout = sandbox_layout(ctx.need_data())
        private = layout.private_file(task.dataset)
        if not layout.store.is_file() or not private.is_file():
            raise GradingError(
                f"task '{ctx.task_id}' is graded on released sandbox results, but there is no "
                f"data sandbox with dataset '{task.dataset}' at {layout.root} (the data root's "
                "parent must be the hub's state folder, where medai-sandbox keeps its store)"
            )
        cohort = pd.read_parquet(private)
        missing = sorted({*task.x, *task.by, task.y, task.value} - {None, *cohort.columns})
        if missing:
            raise GradingError(
                f"task '{ctx.task_id}' names columns {missing} that dataset '{task.dataset}' does "
                f"not have (it has: {', '.join(cohort.columns)}); fix tasks.yaml"
            )
        figures = trusted_figures(task, cohort)
        return Prepared(state={"store": str(layout.store), **figures})

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        from medai.autograder.scoring import TaskScore

        student = GRADED_STUDENT.get()
        if not isinstance(got, str) or not JOB_ID.fullmatch(got):
            return TaskScore(
                0.0,
                "no sandbox job id was recorded: results are graded from the sandbox's record of "
                "your released job, never from a number in the notebook",
            )
        if student is None:
            return TaskScore(0.0, "the grader did not say whose submission this is")
        job = read_job(Path(state["store"]), got)
        if job is None or job["user"] != student:
            return TaskScore(0.0, f"job {got} is not one of your sandbox jobs")
        if job["dataset"] != task.dataset:
            return TaskScore(0.0, f"job {got} ran on '{job['dataset']}', not on '{task.dataset}'")
        if job["status"] != "released":
            return TaskScore(
                0.0,
                f"job {got} was {job['status']} ({job['rule']}): only released results are graded",
            )
        out = job["output"] or {}
        if out.get("kind") != task.output:
            return TaskScore(0.0, f"job {got} released a {out.get('kind')}, not a {task.output}")
        if task.output == "regression":
            return self._regression(task, got, out, state)
        return self._table(task, got, out, state)

    def _regression(self, task: ReleasedTask, job: str, out: dict, state: dict) -> Any:
        from medai.autograder.scoring import TaskScore

        coef = out.get("coef") or {}
        if (
            out.get("y") != task.y
            or out.get("family") != task.family
            or set(coef) != {"const", *task.x}
        ):
            return TaskScore(
                0.0,
                f"job {job} is not the {task.family} regression of {task.y} on "
                f"{', '.join(task.x)} (with an intercept) that the question asks for",
            )
        got, want = coef.get(task.coefficient), state["coef"]
        if not isinstance(got, int | float) or not math.isfinite(got):
            return TaskScore(0.0, f"job {job} released no value for {task.coefficient}")
        if _close(float(got), want, task.tolerance):
            return TaskScore(1.0, f"{task.coefficient} = {got:g}, as on the whole private cohort")
        if math.copysign(1, got) == math.copysign(1, want):
            return TaskScore(
                task.sign_only_fraction,
                f"{task.coefficient} = {got:g} has the right sign but is not the whole cohort's "
                "estimate (did you fit on a subset of the patients?)",
            )
        return TaskScore(0.0, f"{task.coefficient} = {got:g} has the wrong sign")

    def _table(self, task: ReleasedTask, job: str, out: dict, state: dict) -> Any:
        from medai.autograder.scoring import TaskScore

        if (
            out.get("by") != task.by
            or out.get("stat") != task.stat
            or (task.stat != "count" and out.get("value") != task.value)
        ):
            what = "patient counts" if task.stat == "count" else f"{task.stat} {task.value}"
            return TaskScore(0.0, f"job {job} is not the table of {what} by {', '.join(task.by)}")
        cells = [c for c in out.get("cells") or [] if c.get("value") is not None]
        if not cells:
            return TaskScore(0.0, f"job {job} released no cell")
        want = state["cells"]
        bad = [
            c["group"]
            for c in cells
            if tuple(str(g) for g in c["group"]) not in want
            or not _close(
                float(c["value"]), want[tuple(str(g) for g in c["group"])], task.tolerance
            )
        ]
        if bad:
            return TaskScore(
                0.0, f"job {job}: cell(s) {bad[:3]} differ from the whole private cohort's"
            )
        return TaskScore(1.0, f"{len(cells)} released cell(s), as on the whole private cohort")

    def report(self, task: Any, expected: Any, state: Any) -> Any:
        return None  # the reference records its author's job id: nothing to judge
