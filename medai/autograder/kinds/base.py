"""The interface every task kind implements, and what the two sides hand it.

A task kind (``kind:`` in ``tasks.yaml``) is one module in this package holding its task
model (pydantic, with a ``kind`` literal) and one :class:`Kind` subclass naming it
(:attr:`Kind.model`); :func:`kind_units` finds them, so adding a kind is adding a module. Shared
parts of the schema (tolerances, data sources, splits, metrics) stay in
:mod:`medai.autograder.tasks`. The methods fall on two sides of the trust boundary:

- **trainee kernel** (imported by :mod:`medai.autograder.lab`): :meth:`Kind.check` runs the public
  check while a trainee works; :meth:`Kind.record` turns the answer into what the sandbox records
  (a value for :func:`medai.autograder.plain.encode`). Neither ever gets a path to hidden data.
- **trusted grader** (called from :mod:`medai.autograder.steps`): :meth:`Kind.prepare` builds what
  scoring needs once per lab, from a :class:`Preparing` the grader fills (only the grader knows
  where the hidden split lives); :meth:`Kind.score` scores one decoded record;
  :meth:`Kind.report` judges the reference solution's own record.

Kind modules import their heavy libraries inside the methods, so a kernel that imports
``medai.autograder.lab`` pays only for this module and the task file's schema.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "GRADED_STUDENT",
    "CheckFailed",
    "Kind",
    "Prepared",
    "Preparing",
    "describe",
    "kind_models",
    "kind_units",
    "say",
]


# Whose submission is being scored: set by the batch before scoring, for kinds whose records
# name something that belongs to a trainee (``kind: released``: a data-sandbox job).
GRADED_STUDENT: ContextVar[str | None] = ContextVar("medai_graded_student", default=None)


class CheckFailed(AssertionError):
    """A public check failed; the message says what to fix."""


def say(ok: bool, task_id: str, message: str) -> bool:
    """Print a passing check's message, or raise :class:`CheckFailed` with a failing one's."""
    if not ok:
        raise CheckFailed(f"FAIL [{task_id}] {message}")
    print(f"PASS [{task_id}] {message}")
    return ok


def describe(exc: BaseException) -> str:
    """An exception as one short line for a trainee."""
    return f"{type(exc).__name__}: {exc}"[:500]


@dataclass(frozen=True)
class Preparing:
    """What the grader hands :meth:`Kind.prepare` (trusted side only)."""

    task_id: str
    seed: int  # the lab's secret seed: grader-drawn inputs follow from it
    inputs_dir: Path  # grader-drawn inputs, copied read-only into every sandbox
    cell_source: str  # the source (solution) text of the task's graded cell
    data_root: Path | None  # holds public/ and hidden/; None when not given

    def need_data(self) -> Path:
        """The data root, or a clear error saying how to pass it."""
        from medai.autograder import GradingError

        if self.data_root is None:
            raise GradingError(
                f"task '{self.task_id}' is scored on hidden labels: pass --data ROOT (the folder "
                "with public/ and hidden/) or set MEDAI_DATA_ROOT"
            )
        return self.data_root


@dataclass
class Prepared:
    """What :meth:`Kind.prepare` returns: the kind's own scoring state, the datasets it scores on
    (checked for a public-seed hidden split), and the hidden pool of a clinician, if any."""

    state: Any = None
    datasets: list[str] = field(default_factory=list)
    oracle: Any = None  # medai.autograder.oracle.PoolLabels


class Kind:
    """One task kind. Subclasses set :attr:`name` to the task model's ``kind`` literal."""

    name: ClassVar[str]  # the ``kind`` literal of :attr:`model`
    model: ClassVar[type]  # the kind's task model (a pydantic model)
    report_fatal: ClassVar[bool] = False  # a reference below full marks stops the batch

    # -- trainee kernel ------------------------------------------------------------------------

    def check(self, task_id: str, task: Any, value: Any, extra: tuple) -> bool:
        """Public mode: print feedback and return True, or raise :class:`CheckFailed`."""
        raise NotImplementedError

    def record(self, task_id: str, task: Any, value: Any, extra: tuple, inputs_dir: Path) -> Any:
        """Grading mode: what the sandbox records for the trusted scorer (plain-encodable)."""
        raise NotImplementedError

    # -- trusted grader ------------------------------------------------------------------------

    def prepare(self, task: Any, ctx: Preparing) -> Prepared:
        """Once per lab: what scoring this task needs besides the reference value."""
        return Prepared()

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        """Score one decoded record (a :class:`medai.autograder.scoring.TaskScore`)."""
        raise NotImplementedError

    def report(self, task: Any, expected: Any, state: Any) -> Any:
        """The reference solution scored like a submission, for the batch report (a
        ``TaskScore``), or None where the reference *is* the answer (nothing to judge)."""
        return self.score(task, expected, expected, state)


def kind_units() -> list[Kind]:
    """One instance of every :class:`Kind` subclass defined in a module of this package."""
    import importlib
    import pkgutil

    import medai.autograder.kinds as package

    units: list[Kind] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        units += [
            obj()
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, Kind) and obj.__module__ == module.__name__
        ]
    return units


def kind_models() -> tuple[type, ...]:
    """The task model of every kind (what ``tasks.yaml`` entries are validated against)."""
    return tuple(unit.model for unit in kind_units())
