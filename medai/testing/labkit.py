"""The lab test kit: what every ``tests/test_lab_*.py`` does, written once.

Each lab is described in ``labs/<lab-id>.yaml`` (next to this module, not in the lab folder,
which is released to trainees)::

    limits: {wall_s: 60, cpu_s: 50, memory_mb: 2048, scratch_mb: 128}  # grading end to end
    cell_timeout_s: 60          # papermill's limit per cell (null: none; 90 if not given)
    naive:                      # what a trainee who has not understood might write, by answer cell
      auroc_answer: |           # code: replaces the cell's one solution region
        return 0.5
      model_answer:
        whole_cell: ...         # or first_region: ..., for a cell of several regions
    variants:                   # further answer sets by name (calibration tables, grader tests)
      green: {model_answer: ...}
    calibration:                # the data the thresholds were set at (LabKit.calibrate_cli)
      {dataset: ehr, n: 10000, seeds: [0, 1, 2], keyed: true}

A lab's test module takes its kit, ``KIT = LabKit.of("m2-evaluation")``, and asks it for the
pieces its tests need, all on the real parts:

- **variants** of the reference notebook: :meth:`LabKit.variant` puts answers in place of
  solution regions (:class:`WholeCell`, :class:`FirstRegion` for the cells where one region is not
  the whole answer);
- **in-process runs** of our own notebook's cells (:meth:`LabKit.run`: CI parameters, the public
  data, ``check`` recording what each task was given), for the function and calibration tests;
- **inputs as the grader draws them** (:meth:`LabKit.cases`) and the grader's own comparison
  (:meth:`LabKit.score`);
- **hidden-split scores** of a model task, as the trusted scorer computes them
  (:meth:`LabKit.hidden_scores`);
- **public verdicts**: under papermill with the CI parameters (:meth:`LabKit.papermill`), or
  in-process with the real ``check`` in public mode (:meth:`LabKit.public_verdicts`);
- **grading** an honest and a naive submission end to end: nbgrader release, the batch in
  bubblewrap sandboxes, the trusted scorer on hidden splits (:meth:`LabKit.grade`).

Everything here runs *our own* lab notebooks in this process; never use it on untrusted code.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from medai.testing.course import (
    by_student,
    environment,
    grade,
    make_course,
    released,
    solved,
    submit,
)

LABS = Path(__file__).resolve().parents[2] / "labs"
DESCRIPTIONS = Path(__file__).with_name("labs")  # <lab-id>.yaml: each lab as its tests see it

# nbgrader's solution region in a source cell (what the trainee's version replaces)
SOLUTION_REGION = re.compile(
    r"^[ \t]*### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.S | re.M
)


class WholeCell(str):
    """An answer that replaces the whole cell, not only its solution region."""


class FirstRegion(str):
    """An answer for the first solution region of a cell that has several (the rest stay)."""


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON Lines file (the text datasets' format)."""
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def generate(dataset: str, root: Path, *, n: int, seed: int, secret: bytes | None = None) -> Path:
    """Generate ``dataset`` under ``root`` quietly (``secret``: the data key of hidden splits)."""
    from medai.synthetic.core import generate as generate_dataset

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        generate_dataset(dataset, root, n=n, seed=seed, secret=secret)
    return root


def with_answers(nb: nbformat.NotebookNode, answers: Mapping[str, str]) -> nbformat.NotebookNode:
    """A copy of ``nb`` with each cell named in ``answers`` (grade_id -> code) answered: a plain
    string replaces the cell's one solution region, a :class:`WholeCell` the cell's source, a
    :class:`FirstRegion` the first of its regions."""
    nb = nbformat.from_dict(nb)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    for gid, answer in answers.items():
        if gid not in cells:
            raise KeyError(f"the notebook has no cell {gid!r} (answers name cells by grade_id)")
        cell = cells[gid]
        if isinstance(answer, WholeCell):
            cell.source = str(answer)
            continue
        new, n = SOLUTION_REGION.subn(
            lambda _m, a=str(answer): a,
            cell.source,
            count=1 if isinstance(answer, FirstRegion) else 0,
        )
        if n == 0 or (n > 1 and not isinstance(answer, FirstRegion)):
            raise ValueError(
                f"cell {gid!r} has {n} solution regions; a plain answer replaces exactly one "
                "(use WholeCell or FirstRegion for the others)"
            )
        cell.source = new
    return nb


def verdicts(executed: Path) -> dict[str, str]:
    """grade_id of each check cell of an executed notebook -> "PASS", "FAIL", or the end of what
    it printed instead ("no output" for a cell that did not run)."""
    nb = nbformat.read(executed, as_version=4)
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        text = "".join(
            o.get("text", "") + (f"{o['ename']}: {o['evalue']}" if "ename" in o else "")
            for o in cell.get("outputs", [])
        )
        gid = meta["grade_id"]
        if f"FAIL [{gid}]" in text:
            found[gid] = "FAIL"
        elif f"PASS [{gid}]" in text:
            found[gid] = "PASS"
        else:
            found[gid] = text.strip()[-300:] or "no output"
    return found


def _answers(path: Path, where: str, given: Mapping[str, Any]) -> dict[str, str]:
    """A description's answers (cell -> code, or -> ``{whole_cell: code}`` or
    ``{first_region: code}``) as :func:`with_answers` takes them."""
    forms = {"whole_cell": WholeCell, "first_region": FirstRegion}
    found: dict[str, str] = {}
    for cell, answer in given.items():
        if isinstance(answer, dict) and len(answer) == 1 and next(iter(answer)) in forms:
            ((form, code),) = answer.items()
            found[cell] = forms[form](code)
        elif isinstance(answer, str):
            found[cell] = answer
        else:
            raise ValueError(
                f"{path}: {where}.{cell} must be code, or {{whole_cell: code}} or "
                f"{{first_region: code}}; got {answer!r}"
            )
    return found


@dataclass
class Run:
    """What an in-process run of a notebook left: its namespace, and what each task was given
    to ``check`` (the value, and any further arguments)."""

    ns: dict[str, Any]
    checked: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, tuple] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.ns[name]

    def args(self, task: str) -> tuple:
        """Everything ``check(task, ...)`` was given after the task id."""
        return (self.checked[task], *self.extra[task])


def run_cells(
    nb: nbformat.NotebookNode,
    *,
    params: Mapping[str, Any] | None = None,
    data: Path | None = None,
    skip: Iterable[str] = (),
    only: Iterable[str] | None = None,
    until: str | None = None,
    ns: dict[str, Any] | None = None,
    inject: Mapping[str, Any] | None = None,
) -> Run:
    """Run the code cells of our own notebook ``nb`` in this process, quietly.

    ``params`` are appended to the ``parameters`` cell (as papermill does); ``data`` (a data
    root) is the public data the cells read (``MEDAI_DATA``); cells whose grade_id is in
    ``skip``, or not in ``only``, are left out, and the run stops before cell ``until``. ``ns``
    starts the namespace; ``check`` records instead of checking, and the names of ``inject``
    are set before every cell (after the cell that imports the lab's own ``check``, too).
    """
    run = Run(ns if ns is not None else {})

    def record(task: str, value: Any, *extra: Any) -> None:
        run.checked[task], run.extra[task] = value, extra

    names = {"check": record, **(inject or {})}
    skip, only = set(skip), None if only is None else set(only)
    public = str(data / "public") if data is not None else None
    with (
        environment(MEDAI_DATA=public),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if until is not None and gid == until:
                break
            if cell.cell_type != "code" or gid in skip or (only is not None and gid not in only):
                continue
            source = cell.source
            if gid == "parameters" and params:
                source += "".join(f"\n{k} = {v!r}" for k, v in params.items())
            run.ns.update(names)
            exec(compile(source, gid or "cell", "exec"), run.ns)  # our own notebook
    return run


def public_verdicts(nb: nbformat.NotebookNode, lab_dir: Path, data_root: Path) -> dict[str, str]:
    """Run a lab notebook's code cells in this process with the real ``check`` in public mode
    (what a trainee's kernel and papermill run) on the public data of ``data_root``; return each
    check cell's verdict, ``"PASS"`` or ``"FAIL"`` (a failed check stops only its own cell).
    Cheaper than papermill; for our own notebooks, never untrusted code."""
    from medai.autograder import lab

    spec, lab._public_spec = lab._public_spec, None
    found: dict[str, str] = {}
    ns: dict = {}
    env = {"MEDAI_DATA": str(data_root / "public"), "MEDAI_TASKS": str(lab_dir / "tasks.yaml")}
    try:
        with environment(**env):
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                if cell.cell_type != "code":
                    continue
                out = io.StringIO()
                try:
                    with contextlib.redirect_stdout(out):
                        exec(cell.source, ns)
                except lab.CheckFailed:
                    found[meta.get("grade_id", "?")] = "FAIL"
                    continue
                if meta.get("grade"):
                    found[meta["grade_id"]] = "PASS" if "PASS [" in out.getvalue() else "no verdict"
    finally:
        lab._public_spec = spec
    return found


@dataclass
class Executed:
    """A notebook run under papermill: where it was written, the verdict of each check cell,
    and the error papermill raised (a failed check raises ``CheckFailed``)."""

    path: Path
    verdicts: dict[str, str]
    error: Any  # papermill's PapermillExecutionError: .ename, .evalue

    @property
    def failed(self) -> set[str]:
        return {gid for gid, v in self.verdicts.items() if v == "FAIL"}

    def figures(self, task: str, *metrics: str) -> list[float]:
        """The figures of the public check that stopped the run (``FAIL [task] metric x ...``),
        for ``metrics`` in order; the failure must be that check's verdict, not a crash."""
        assert self.error.ename == "CheckFailed", self.error.evalue
        pattern = rf"FAIL \[{re.escape(task)}\] " + " .*".join(
            rf"{re.escape(m)} ([\d.]+)" for m in metrics
        )
        found = re.search(pattern, self.error.evalue)
        assert found, self.error.evalue
        return [float(x) for x in found.groups()]


@dataclass
class Graded:
    """A graded batch: each student's result, the batch summary, the course folder."""

    results: dict[str, dict]
    summary: Any
    course: Path

    def __getitem__(self, student: str) -> dict:
        return self.results[student]


@dataclass(frozen=True)
class LabKit:
    """One lab of ``labs/``, as its tests see it.

    ``lab_id`` names the folder (its notebook is ``<lab_id>.ipynb``); ``limits`` are the grading
    sandbox's (wall_s, cpu_s, memory_mb, scratch_mb) for :meth:`grade`; ``cell_timeout_s`` is
    papermill's limit per cell (None: none).
    """

    lab_id: str
    limits: Mapping[str, int] = field(default_factory=dict)
    cell_timeout_s: int | None = 90
    naive: Mapping[str, str] = field(default_factory=dict)
    variants: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    calibration: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, lab_id: str) -> LabKit:
        """The kit of ``lab_id`` as ``medai/testing/labs/<lab_id>.yaml`` describes it."""
        import yaml

        path = DESCRIPTIONS / f"{lab_id}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"no description of lab {lab_id!r}: write {path}")
        if not (LABS / lab_id).is_dir():
            raise FileNotFoundError(f"{path}: lab {lab_id!r} has no folder in {LABS}")
        described = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(described) - {"limits", "cell_timeout_s", "naive", "variants", "calibration"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        described["naive"] = _answers(path, "naive", described.get("naive") or {})
        described["variants"] = {
            name: _answers(path, f"variants.{name}", answers)
            for name, answers in (described.get("variants") or {}).items()
        }
        return cls(lab_id, **described)

    @property
    def dir(self) -> Path:
        return LABS / self.lab_id

    @property
    def notebook(self) -> Path:
        return self.dir / f"{self.lab_id}.ipynb"

    @functools.cached_property
    def tasks(self) -> dict[str, Any]:
        """The lab's tasks (``tasks.yaml``), by task id."""
        from medai.autograder.tasks import load_tasks

        return load_tasks(self.dir / "tasks.yaml").tasks

    @property
    def ci(self) -> dict[str, Any]:
        """The papermill parameters CI runs the lab with."""
        from medai.site.notebooks import ci_parameters

        return ci_parameters(self.dir, self.notebook.name)

    # -- notebooks ---------------------------------------------------------------------------

    def source(self) -> nbformat.NotebookNode:
        """The reference notebook (solutions in place), read afresh."""
        return nbformat.read(self.notebook, as_version=4)

    def variant(self, answers: Mapping[str, str] | None = None) -> nbformat.NotebookNode:
        """The reference notebook with ``answers`` in place (see :func:`with_answers`)."""
        return with_answers(self.source(), answers or {})

    def cell(self, grade_id: str, nb: nbformat.NotebookNode | None = None) -> Any:
        """The cell ``grade_id`` of ``nb`` (the reference notebook by default)."""
        cells = (nb or self.source()).cells
        return next(c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)

    def run(
        self,
        nb: nbformat.NotebookNode | None = None,
        params: Mapping[str, Any] | None = None,
        **kw: Any,
    ) -> Run:
        """:func:`run_cells` on ``nb`` (the reference by default) with ``params`` (the CI
        parameters by default)."""
        return run_cells(nb or self.source(), params=self.ci if params is None else params, **kw)

    # -- function tasks ----------------------------------------------------------------------

    def cases(self, task: str, n: int = 40, *, seed: int, hidden: bool = True) -> list[dict]:
        """``n`` inputs drawn as the grader draws them, then the check cell's hidden cases
        (``hidden``) and the public worked examples."""
        from medai.autograder.batch import _draw, hidden_cases  # the grader's own draws

        spec = self.tasks[task]
        rng = np.random.default_rng([seed, len(task)])
        drawn = [{k: _draw(s, rng) for k, s in spec.args.items()} for _ in range(n)]
        secret = hidden_cases(self.cell(task).source) if hidden else []
        return drawn + secret + [ex.args for ex in spec.examples]

    @staticmethod
    def outputs(fn: Callable[..., Any], cases: list[dict]) -> list:
        """``fn`` on each case, through the plain encoding values leave a sandbox in."""
        from medai.autograder import plain

        return [plain.decode(plain.encode(fn(**c))) for c in cases]

    def score(self, task: str, cases: list[dict], expected: list, got: list) -> Any:
        """The grader's score of ``got`` against ``expected`` (``.fraction``, ``.message``)."""
        from medai.autograder.scoring import score_function

        return score_function(self.tasks[task], cases, expected, got)

    # -- model tasks -------------------------------------------------------------------------

    def hidden_scores(
        self,
        task: str,
        predict: Callable[[Any], Any],
        data_root: Path,
        mask_shape: tuple[int, int] | None = None,
    ) -> dict[str, float]:
        """Each metric of model task ``task`` for ``predict`` on the hidden test labels of
        ``data_root``, exactly as the trusted scorer computes it."""
        from medai.autograder.metrics import compute
        from medai.autograder.modeldata import (
            align,
            load_groups,
            load_source,
            to_plain_output,
            validate_output,
        )

        spec = self.tasks[task]
        public, hidden = data_root / "public" / spec.dataset, data_root / "hidden" / spec.dataset
        inputs = load_source(spec.test.inputs, public)
        pred = to_plain_output(predict(inputs.value), spec.output, inputs.ids)
        pred = validate_output(pred, spec.output, len(inputs.value), mask_shape)
        labels = align(inputs, load_source(spec.test.labels, public, hidden), "test split")
        groups = load_groups(spec.test, inputs, public)
        return {m.name: compute(m.name, labels, pred, groups=groups) for m in spec.metrics}

    def assert_full_marks_at(self, task: str, scores: Mapping[str, float]) -> None:
        """Every metric of model task ``task`` reaches its full-marks threshold in ``scores``."""
        for m in self.tasks[task].metrics:
            assert scores[m.name] >= m.full_marks_at, (m.name, scores)

    def hidden_model_scores(
        self,
        nb: nbformat.NotebookNode,
        data_root: Path,
        task: str,
        *,
        params: Mapping[str, Any] | None = None,
        mask_shape: tuple[int, int] | None = None,
    ) -> dict[str, float]:
        """Run ``nb`` in-process (CI parameters, the ``explore`` cell left out), then score the
        ``predict`` it passed to ``check(task, ...)`` on the hidden test labels."""
        run = self.run(nb, params, data=data_root, skip={"explore"})
        return self.hidden_scores(task, run.checked[task], data_root, mask_shape)

    def model_truth(self, task: str, data_root: Path) -> Any:
        """The trusted side's hidden truth of model task ``task`` (the grader's own)."""
        from medai.autograder.batch import model_truth

        return model_truth(task, self.tasks[task], data_root)

    def oracle_pool(self, task: str, data_root: Path) -> Any:
        """The hidden pool labels the grader's clinician answers from, for ``task``."""
        from medai.autograder.batch import oracle_pool

        return oracle_pool(task, self.tasks[task], data_root)

    # -- public checks -----------------------------------------------------------------------

    def public_verdicts(self, nb: nbformat.NotebookNode, data_root: Path) -> dict[str, str]:
        """Each check cell's verdict with the real ``check`` in public mode (in-process)."""
        return public_verdicts(nb, self.dir, data_root)

    def papermill(
        self,
        nb: nbformat.NotebookNode,
        public: Path,
        work: Path,
        *,
        allow_errors: bool = True,
    ) -> Executed:
        """Run ``nb`` under papermill with the CI parameters, reading ``public`` (a public data
        folder) in ``work`` (with the lab's ``tasks.yaml``), as the notebook CI does. With
        ``allow_errors`` every cell runs, so that each check reports; else the run stops at the
        first error. A clean run is an error here: these runs are of answers that must fail."""
        import papermill as pm
        from papermill.exceptions import PapermillExecutionError

        work.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.dir / "tasks.yaml", work / "tasks.yaml")
        src, out = work / self.notebook.name, work / "executed.ipynb"
        nbformat.write(nb, src)
        error = None
        with environment(MEDAI_DATA=str(public)):
            try:
                pm.execute_notebook(
                    str(src),
                    str(out),
                    parameters=self.ci,
                    kernel_name="python3",
                    cwd=str(work),
                    progress_bar=False,
                    allow_errors=allow_errors,
                    execution_timeout=self.cell_timeout_s,
                )
            except PapermillExecutionError as exc:  # raised after every cell ran (allow_errors)
                error = exc
        found = verdicts(out)
        assert error is not None, f"every cell of {src.name} ran without an error: {found}"
        return Executed(out, found, error)

    # -- grading -----------------------------------------------------------------------------

    def grade(
        self,
        work: Path,
        data_root: Path,
        submissions: Mapping[str, nbformat.NotebookNode],
    ) -> Graded:
        """Release the lab with nbgrader in a course under ``work``, hand in each submission
        (student -> a variant of the reference notebook, filled into the released one as a
        trainee would) and grade them all as ``medai grade`` does, with :attr:`limits`."""
        course = make_course(work / "course", self.dir, self.lab_id)
        name = self.notebook.name
        release = released(course, self.lab_id)
        for student, nb in submissions.items():
            submit(course, self.lab_id, student, {name: solved(release, nb)})
        summary = grade(course, self.lab_id, data_root, {"limits": dict(self.limits)})
        return Graded(by_student(summary), summary, course)

    def assert_full_marks(self, result: dict) -> None:
        """``result`` is graded, with full marks on every task of ``tasks.yaml`` and on every
        other task scored automatically (a hand-graded one has no score yet)."""
        assert result["status"] == "graded", result["messages"]
        missing = set(self.tasks) - set(result["tasks"])
        assert not missing, f"tasks without a score: {sorted(missing)}"
        for tid, t in result["tasks"].items():
            if tid in self.tasks or t["score"] is not None:
                assert t["score"] == t["max"], (tid, t)

    @staticmethod
    def assert_at_most(result: dict, shares: Mapping[str, float]) -> None:
        """Each task of ``shares`` scored at most that share of its marks in ``result``."""
        for tid, share in shares.items():
            t = result["tasks"][tid]
            assert t["score"] <= share * t["max"], (tid, t)

    # -- calibration -------------------------------------------------------------------------

    def calibration_data(
        self, root: Path, *, seed: int = 0, n: int | None = None, secret: bytes | None = None
    ) -> Path:
        """Generate the description's ``calibration`` dataset (``n`` units, by default the size
        the thresholds were set at) under ``root``; return ``root``."""
        cal = self.calibration
        return generate(cal["dataset"], root, n=n or cal["n"], seed=seed, secret=secret)

    def calibrate_cli(
        self,
        description: str,
        figures: Callable[[Path, int, Any], Mapping[str, Any]],
        *,
        options: Callable[[Any], None] | None = None,
        naive: bool = False,
    ) -> None:
        """The lab's calibration script for instructors (it lives with the lab's tests, because
        everything in a lab folder is released to trainees). Per seed (``--seeds``), generate
        the description's ``calibration`` data (``dataset``, ``--n`` units, keyed with the tests'
        data key if ``keyed``; or read ``--data-root /tmp/x{seed}``), print
        ``figures(root, seed, args)``, then the minimum, mean and maximum of each numeric figure
        over the seeds. ``options`` adds the lab's own arguments; with ``naive``, ``--naive``
        sets ``args.answers`` to the naive answers (else None). Keyed data is drawn with
        ``$MEDAI_TEST_DATA_KEY`` when set (:func:`medai.testing.course.lab_data_key`), to check
        the thresholds under another key."""
        import argparse
        import tempfile

        from medai.testing.course import lab_data_key

        cal = self.calibration
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument("--seeds", type=int, nargs="+", default=list(cal.get("seeds", range(5))))
        ap.add_argument("--n", type=int, default=cal["n"])
        ap.add_argument("--data-root", help="an existing data root per seed, e.g. /tmp/data{seed}")
        if naive:
            ap.add_argument("--naive", action="store_true", help="score the naive answers instead")
        if options is not None:
            options(ap)
        args = ap.parse_args()
        args.answers = self.naive if getattr(args, "naive", False) else None
        rows = []
        for seed in args.seeds:
            if args.data_root:
                root = Path(args.data_root.format(seed=seed))
            else:
                secret = lab_data_key() if cal.get("keyed") else None
                root = Path(tempfile.mkdtemp(prefix=f"{self.lab_id}-{seed}-"))
                self.calibration_data(root, seed=seed, n=args.n, secret=secret)
            rows.append(dict(figures(root, seed, args)))
            shown = (
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()
            )
            print(f"seed {seed}: " + ", ".join(shown), flush=True)
        numeric = [k for k in rows[0] if all(isinstance(r[k], int | float) for r in rows)]
        for name, fn in (("min", min), ("mean", np.mean), ("max", max)):
            print(f"{name}: " + ", ".join(f"{k} {fn([r[k] for r in rows]):.3f}" for k in numeric))
