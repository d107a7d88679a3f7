"""A lab's task file, ``tasks.yaml``: what each graded task is and how it is scored.

The file sits beside the lab's notebook and is released to trainees with it: grading is
transparent (tolerances and metric thresholds are public). What stays secret is never in it:
expected values come from running the reference solution in the grader, and labels of the hidden
split are read only by the trusted scorer. The grader always uses the course *source* copy, never
the one in a submission. Three kinds of automatically scored task::

    tasks:
      ckd_rate:                      # a value computed from public data
        kind: value
        tolerance: {abs: 1.0e-4}
      egfr:                          # a function, called on inputs the grader draws
        kind: function
        args: {creat_umol: {uniform: [40, 400]}, age: {integers: [18, 90]}, male: {choice: [0, 1]}}
        examples: [{args: {creat_umol: 80, age: 50, male: 1}, expect: 97.6}]
      ckd_model:                     # a model, scored on the hidden split by a metric
        kind: predict
        dataset: ehr
        ...

Free-text answers are nbgrader's manually graded cells and need no entry here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medai.autograder import GradingError

TASK_ID = r"^[a-z][a-z0-9_-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tolerance(_Strict):
    abs: float = Field(1e-6, ge=0, description="Absolute tolerance for numbers and arrays.")
    rel: float = Field(1e-6, ge=0, description="Relative tolerance for numbers and arrays.")


class PublicShape(_Strict):
    type: Literal["float", "int", "bool", "str", "array", "series"] | None = None
    min: float | None = None
    max: float | None = None


class ValueTask(_Strict):
    kind: Literal["value"]
    tolerance: Tolerance = Tolerance()
    public: PublicShape = PublicShape()


class ArgSpec(_Strict):
    """How the grader draws one argument: exactly one of uniform, integers, choice."""

    uniform: tuple[float, float] | None = None
    integers: tuple[int, int] | None = None
    choice: list[Any] | None = None
    decimals: int | None = Field(None, description="Round uniform draws to this many decimals.")

    @model_validator(mode="after")
    def _one(self) -> ArgSpec:
        given = [k for k in ("uniform", "integers", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, integers, choice")
        return self


class Example(_Strict):
    args: dict[str, Any]
    expect: Any


class FunctionTask(_Strict):
    kind: Literal["function"]
    args: dict[str, ArgSpec] = Field(description="Keyword arguments the grader draws.")
    n_cases: int = Field(40, ge=1, le=10_000)
    examples: list[Example] = Field(default_factory=list, description="Public worked examples.")
    tolerance: Tolerance = Tolerance()
    partial: bool = Field(True, description="Credit the share of cases right (else all or none).")


class TableRef(_Strict):
    table: str
    where: dict[str, Any] = Field(default_factory=dict)


class PredictTask(_Strict):
    kind: Literal["predict"]
    dataset: str
    id_column: str
    target: str
    train_labels: str = Field(description="Public table with the training labels.")
    test_ids: TableRef = Field(description="Public rows whose outcome the model predicts.")
    hidden_labels: str = Field(description="Hidden table with the test labels (scorer only).")
    metric: Literal["auroc"] = "auroc"
    full_marks_at: float = Field(0.8, description="Metric value that earns all the points.")
    zero_marks_at: float = Field(0.6, description="Metric value at or below which it earns 0.")
    public_holdout: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _order(self) -> PredictTask:
        if self.full_marks_at <= self.zero_marks_at:
            raise ValueError("full_marks_at must be above zero_marks_at")
        return self


Task = Annotated[ValueTask | FunctionTask | PredictTask, Field(discriminator="kind")]


class TaskFile(_Strict):
    lab: str
    tasks: dict[Annotated[str, Field(pattern=TASK_ID)], Task]


def parse_tasks(data: Any, where: str = "tasks.yaml") -> TaskFile:
    """Validate already-loaded task data; raise :class:`GradingError` naming key and reason."""
    try:
        return TaskFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise GradingError(f"{where} is not a valid task file:\n" + "\n".join(lines)) from None


def load_tasks(path: Path | str) -> TaskFile:
    """Read and validate a ``tasks.yaml``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GradingError(
            f"{path} not found: every lab needs a tasks.yaml beside its notebook "
            "(see labs/README.md)"
        ) from None
    except yaml.YAMLError as exc:
        raise GradingError(f"{path} is not valid YAML: {exc}") from None
    return parse_tasks(data, str(path))
