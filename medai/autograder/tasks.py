"""A lab's task file, ``tasks.yaml``: what each graded task is and how it is scored.

The file sits beside the lab's notebook and is released to trainees with it: grading is
transparent (tolerances and metric thresholds are public). What stays secret is never in it:
expected values come from running the reference solution in the grader, and labels of the hidden
split are read only by the trusted scorer. The grader always uses the course *source* copy, never
the one in a submission. Five kinds of automatically scored task::

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

      skin_cnn:                      # a predict function, scored on hidden labels by metrics
        kind: model
        dataset: skin
        dev: {inputs: {npz: train.npz, key: images}, labels: {npz: train.npz, key: labels}}
        test: {inputs: {npz: test.npz, key: images},
               labels: {hidden: true, npz: test_labels.npz, key: labels}}
        output: {type: proba, classes: 7}
        metrics: [{name: macro_auroc, full_marks_at: 0.9, zero_marks_at: 0.75}]
      no_leakage:                    # a named property of what the trainee passes
        kind: property
        property: disjoint

Free-text answers are nbgrader's manually graded cells and need no entry here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

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


class TableRef(_Strict):
    table: str
    where: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- kind: model

_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"  # a plain file name inside the dataset folder
FileName = Annotated[str, Field(pattern=_FILE)]
Scalar = str | int | float | bool
Where = dict[str, Scalar | list[Scalar]]


class IdsSource(_Strict):
    """``{csv: patients.csv, column: patient_id, where: {split: test}}``: a list of ids."""

    csv: FileName
    column: str
    where: Where = Field(default_factory=dict)


class DataSource(_Strict):
    """Where a split's inputs or labels come from; exactly one of npz, csv, jsonl, ids.

    Files are relative to ``$MEDAI_DATA/<dataset>/`` (public) or, with ``hidden: true``, to
    ``<root>/hidden/<dataset>/``, which only the trusted scorer reads.
    """

    hidden: bool = False
    npz: FileName | None = None
    key: str | None = Field(None, description="npz: the array to read.")
    csv: FileName | None = Field(None, description="A table (.csv, or the .parquet twin).")
    jsonl: FileName | None = None
    ids: IdsSource | None = None
    where: Where = Field(
        default_factory=dict, description="csv/jsonl/npz: keep matching rows (npz: by arrays)."
    )
    id_column: str | None = Field(None, description="csv: the id column (aligns labels).")
    id_field: str = Field("id", description="jsonl: the id field (aligns labels).")
    column: str | None = Field(None, description="csv labels: one column -> (n,).")
    columns: list[str] | None = Field(None, description="csv labels: several -> (n, k).")
    field: str | None = Field(None, description="jsonl labels: one field per record.")
    drop: list[str] = Field(default_factory=list, description="csv/jsonl inputs: hide these.")

    @model_validator(mode="after")
    def _one(self) -> DataSource:
        given = [k for k in ("npz", "csv", "jsonl", "ids") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of npz, csv, jsonl, ids (got {given or 'none'})")
        kind = given[0]
        if kind == "npz" and not self.key:
            raise ValueError("an npz source needs `key` (the array to read)")
        if kind != "npz" and self.key is not None:
            raise ValueError("`key` belongs to npz sources")
        if kind != "csv" and (self.column or self.columns or self.id_column):
            raise ValueError("`column`, `columns` and `id_column` belong to csv sources")
        if self.column and self.columns:
            raise ValueError("give `column` or `columns`, not both")
        if kind != "jsonl" and self.field is not None:
            raise ValueError("`field` belongs to jsonl sources")
        if kind in ("npz", "ids") and self.drop:
            raise ValueError("`drop` belongs to csv and jsonl sources")
        if kind == "ids" and self.where:
            raise ValueError("an ids source takes `where` inside `ids:`")
        if kind == "ids" and self.hidden:
            raise ValueError("an ids source is always public")
        return self

    @property
    def file(self) -> str:
        return self.npz or self.csv or self.jsonl or (self.ids.csv if self.ids else "")


class Split(_Strict):
    inputs: DataSource
    labels: DataSource
    groups: DataSource | None = Field(
        None,
        description="Public: each input's group (skin tone, region, ...), for metrics by group; "
        "aligned to the inputs like the labels.",
    )
    relabel: dict[str, str] = Field(
        default_factory=dict,
        description="Merge group values before scoring, e.g. {under_resourced: rural}.",
    )

    @model_validator(mode="after")
    def _inputs_public(self) -> Split:
        if self.inputs.hidden:
            raise ValueError(
                "inputs must be public (hidden: true is only for labels): the trainee's predict "
                "function runs on them inside the sandbox"
            )
        if self.groups is not None and self.groups.hidden:
            raise ValueError("groups must be public: the instant feedback reports them too")
        if self.relabel and self.groups is None:
            raise ValueError("`relabel` merges group values: give `groups` too")
        return self


OutputType = Literal["proba", "score", "label", "mask", "spans", "risk", "answers"]


class OutputSpec(_Strict):
    type: OutputType
    classes: int | None = Field(None, ge=2, description="proba/label: the number of classes.")

    @model_validator(mode="after")
    def _classes(self) -> OutputSpec:
        if self.type == "proba" and self.classes is None:
            raise ValueError("a proba output needs `classes` (2 for a binary outcome)")
        if self.classes is not None and self.type not in ("proba", "label"):
            raise ValueError(f"`classes` does not apply to a {self.type} output")
        return self


class MetricSpec(_Strict):
    name: str
    full_marks_at: float
    zero_marks_at: float
    match_label: bool = Field(False, description="span metrics: labels must match too.")

    @model_validator(mode="after")
    def _known(self) -> MetricSpec:
        from medai.autograder.metrics import METRICS

        if self.name not in METRICS:
            raise ValueError(f"unknown metric '{self.name}'; known: {sorted(METRICS)}")
        if self.full_marks_at == self.zero_marks_at:
            raise ValueError("full_marks_at and zero_marks_at must differ")
        if self.match_label and not self.name.startswith("span_"):
            raise ValueError("`match_label` applies to span_recall and span_precision only")
        return self


class OracleSpec(_Strict):
    """A simulated expert who labels the cases the trainee asks about (active learning).

    ``lab.clinician(task_id)`` gives the notebook a pool to choose from and asks for labels.
    While the trainee works it answers from the public ``practice`` pool; in the grader the pool
    is ``graded`` and the answers come from its hidden labels, served by the trusted grader over
    a pipe: no label of the pool enters the kernel unless asked for, and at most ``budget`` in a
    run (:mod:`medai.autograder.oracle`).
    """

    budget: int = Field(ge=1, le=100_000, description="Labels the expert gives in one run.")
    practice: Split = Field(description="Public pool and its public labels: practice.")
    graded: Split = Field(description="Public pool, hidden labels: answered by the grader.")

    @model_validator(mode="after")
    def _visibility(self) -> OracleSpec:
        if self.practice.labels.hidden:
            raise ValueError("oracle.practice.labels must be public: they answer while you work")
        if not self.graded.labels.hidden:
            raise ValueError(
                "oracle.graded.labels must say `hidden: true`: the grader answers from them, "
                "and a public copy would hand the pool's labels to the kernel"
            )
        return self


# Each kind's model lives in its unit (medai/autograder/kinds/<kind>.py, ``Kind.model``); the
# task file takes any of them, told apart by ``kind``. The units import the shared parts above
# from this module, so they are loaded here, once those parts exist.
from medai.autograder.kinds.base import kind_models  # noqa: E402

TASK_MODELS: tuple[type[BaseModel], ...] = kind_models()
Task = Annotated[Union[TASK_MODELS], Field(discriminator="kind")]  # noqa: UP007


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


# the kinds' models, importable from here as before
from medai.autograder.kinds.function import FunctionTask  # noqa: E402
from medai.autograder.kinds.model import ModelTask  # noqa: E402
from medai.autograder.kinds.predict import PredictTask  # noqa: E402
from medai.autograder.kinds.property import PropertyTask  # noqa: E402
from medai.autograder.kinds.value import ValueTask  # noqa: E402

__all__ = [
    "ArgSpec",
    "DataSource",
    "FunctionTask",
    "ModelTask",
    "OutputSpec",
    "PredictTask",
    "PropertyTask",
    "Split",
    "TaskFile",
    "Tolerance",
    "ValueTask",
    "load_tasks",
    "parse_tasks",
]
