"""``medai grade LAB``: grade a lab's collected submissions, in parallel, resumably.

The batch loop. Each stage is a named step in :mod:`medai.autograder.steps`, plain data between
them (as nbgrader's ``autograde`` lists its preprocessors)::

    layout.open_course -> prepare.prepare_lab      (task file, gradebook cells, kinds' state)
                       -> reference.reference      (the solution once: expected values)
                       -> grade_submission x N     [worker threads]
                            intake -> execute -> score -> feedback -> late
                       -> gradebook.store          (notebooks, gradebook, log, result JSON last)

Where the grader keeps its state: :mod:`medai.autograder.steps.layout`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from medai.autograder import GradingError
from medai.autograder.kinds.base import GRADED_STUDENT

# Names the lab tests import from here (medai.autograder.kinds and .steps own them now).
from medai.autograder.kinds.function import draw as _draw  # noqa: F401
from medai.autograder.kinds.function import hidden_cases  # noqa: F401
from medai.autograder.kinds.model import model_truth, oracle_pool  # noqa: F401
from medai.autograder.policy import Policy
from medai.autograder.sandbox import SandboxBackend
from medai.autograder.steps.execute import execute
from medai.autograder.steps.feedback import autograded_notebooks, cell_log
from medai.autograder.steps.gradebook import store
from medai.autograder.steps.intake import intake, submission_fingerprint
from medai.autograder.steps.late import late_penalty
from medai.autograder.steps.layout import (
    Course,
    list_students,
    open_course,
    refuse_links,
    state_dir,
)
from medai.autograder.steps.prepare import (
    Lab,
    prepare_lab,
    unkeyed_warnings,  # noqa: F401
)
from medai.autograder.steps.reference import reference
from medai.autograder.steps.result import GradeResult, TaskResult, read_result
from medai.autograder.steps.score import score_tasks, totals

__all__ = ["BatchEvent", "BatchSummary", "grade_lab", "grade_submission", "grader_error"]

_WHY = {
    "timeout": "the notebook ran past the {wall_s:g} s limit and was stopped",
    "crashed": "the notebook's kernel died before finishing (a crash, a memory or process "
    "limit, or os._exit)",
    "output-limit": "the notebook produced more output than allowed and was stopped",
}


def grade_submission(
    lab: Lab,
    course: Course,
    student: str,
    backend: SandboxBackend,
    policy: Policy,
    data_dir: Path | None,
    tmp_root: Path,
) -> tuple[GradeResult, dict[str, nbformat.NotebookNode]]:
    """Grade one submission; return its result and its autograded notebooks."""
    t0 = time.monotonic()
    got = intake(lab, course.submitted / student / lab.id, int(policy.submission.notebook_mb * 1e6))
    t1 = time.monotonic()
    r = GradeResult(student, lab.id, got.fingerprint, messages=list(got.messages))
    r.tamper, r.notebooks = got.tamper, got.notebooks
    r.timestamp = got.timestamp.isoformat() if got.timestamp else None
    run = None
    if got.sanitized:
        notebooks = {name: s.nb for name, s in got.sanitized.items()}
        limits = policy.limits.to_limits()
        run = execute(
            lab,
            notebooks,
            backend=backend,
            data_dir=data_dir,
            tmp_root=tmp_root,
            limits=limits,
            name=student,
        )
        r.oracle, r.sandbox = run.oracle, run.summary()
        if run.status != "ok":
            r.messages.append(_WHY[run.status].format(wall_s=policy.limits.wall_s))
            r.status = run.status
    else:
        r.status = "invalid"
    t2 = time.monotonic()
    GRADED_STUDENT.set(student)  # kinds that check ownership (kind: released) read it
    r.tasks = score_tasks(lab, got, run, policy.on_tamper)
    r.auto_score, r.max_score = totals(r.tasks)
    late = late_penalty(policy, student, lab.id, lab.duedate, got.timestamp, r.auto_score)
    r.late_fraction, r.late_penalty = late.fraction, late.penalty
    r.messages += [late.message] if late.message else []
    t3 = time.monotonic()
    autograded = autograded_notebooks(lab, got, run, r.tasks)
    r.log = cell_log(run)
    t4 = time.monotonic()
    r.seconds = round(t4 - t0, 3)
    r.timings = {
        "intake": round(t1 - t0, 3),
        "sandbox": round(t2 - t1, 3),
        **({f"sandbox.{k}": v for k, v in run.phases.items()} if run else {}),
        "score": round(t3 - t2, 3),
        "feedback": round(t4 - t3, 3),
    }
    return r, autograded


def grader_error(lab: Lab, student: str, exc: Exception) -> GradeResult:
    """The result of a submission the grader itself failed on (regraded on the next run)."""
    tasks = {
        gid: TaskResult(info.name, c.points, 0.0, "grader error")
        for info in lab.notebooks
        for gid, c in info.cells.items()
        if c.grade
    }
    return GradeResult(
        student,
        lab.id,
        "",  # never counts as done: regraded on the next run
        "error",
        [f"grader error: {type(exc).__name__}: {exc}"],
        tasks=tasks,
        max_score=sum(t.max or 0.0 for t in tasks.values()),
    )


@dataclass(frozen=True)
class BatchEvent:
    """What a running batch reports to ``grade_lab(on_event=...)`` (the grading service's progress).

    ``planned``: the submissions to grade (``todo``) and those already done (``skipped``);
    ``reference``: the solution notebook runs; ``started``/``finished``: one submission, with its
    stored result (without the log) when finished.
    """

    kind: str  # planned | reference | started | finished
    student: str | None = None
    todo: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    result: GradeResult | None = None


@dataclass
class BatchSummary:
    lab: str
    graded: list[GradeResult]
    skipped: list[str]
    seconds: float
    reference: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def grade_lab(
    course_dir: Path | Course,
    lab_id: str,
    *,
    backend: SandboxBackend,
    policy: Policy,
    data_root: Path | None = None,
    workers: int | None = None,
    students: list[str] | None = None,
    force: bool = False,
    progress: bool = True,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Grade the collected submissions of ``lab_id`` (see the module docstring).

    ``course_dir`` is a course folder (its nbgrader_config.py is read) or an opened
    :class:`Course`. One batch per lab at a time: a second ``medai grade`` of the same lab is
    refused. ``on_event`` (called from worker threads) receives :class:`BatchEvent` progress.
    """
    import fcntl

    course = course_dir if isinstance(course_dir, Course) else open_course(course_dir)
    if not (course.source / lab_id).is_dir():
        raise GradingError(f"no source folder for lab '{lab_id}' at {course.source / lab_id}")
    refuse_links(course, lab_id)
    state = state_dir(course, lab_id)
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GradingError(
                f"another `medai grade {lab_id}` is running on this course ({state}); wait for it"
            ) from None
        return _grade_lab(
            course,
            lab_id,
            backend=backend,
            policy=policy,
            data_root=data_root,
            workers=workers,
            students=students,
            force=force,
            progress=progress,
            on_event=on_event or (lambda event: None),
        )


def _grade_lab(
    course: Course,
    lab_id: str,
    *,
    backend: SandboxBackend,
    policy: Policy,
    data_root: Path | None,
    workers: int | None,
    students: list[str] | None,
    force: bool,
    progress: bool,
    on_event: Callable[[BatchEvent], None],
) -> BatchSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    t0 = time.monotonic()
    data_root = Path(data_root).resolve() if data_root else None
    data_dir = data_root / "public" if data_root else None
    if data_dir is not None and not data_dir.is_dir():
        raise GradingError(f"{data_dir} does not exist: --data must be the folder holding public/")
    lab = prepare_lab(course, lab_id, data_root)
    everyone = list_students(course, lab_id)
    if students:
        unknown = sorted(set(students) - set(everyone))
        if unknown:
            raise GradingError(
                f"no collected submission of '{lab_id}' for {unknown} under {course.submitted}"
            )
        everyone = [s for s in everyone if s in students]
    todo, skipped = [], []
    for student in everyone:
        prev = None if force else read_result(lab.state / "results" / f"{student}.json")
        if prev is not None and prev.fingerprint == submission_fingerprint(
            course.submitted / student / lab_id
        ):
            skipped.append(student)
            continue
        todo.append(student)
    workers = max(1, workers or os.cpu_count() or 1)
    on_event(BatchEvent("planned", todo=tuple(todo), skipped=tuple(skipped)))
    tmp_root = Path(tempfile.mkdtemp(prefix="medai-grade-"))
    tmp_root.chmod(0o711)
    graded: list[GradeResult] = []
    try:
        if todo:
            on_event(BatchEvent("reference"))
            reference(lab, course, backend, data_dir, tmp_root, policy.limits.to_limits())
        with Progress(
            TextColumn("grading {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task(lab_id, total=len(todo))

            def one(student: str) -> GradeResult:
                on_event(BatchEvent("started", student=student))
                try:
                    result, nbs = grade_submission(
                        lab, course, student, backend, policy, data_dir, tmp_root
                    )
                except Exception as exc:  # a grader-side failure stays with this submission
                    result, nbs = grader_error(lab, student, exc), {}
                store(course, lab, result, nbs)
                on_event(BatchEvent("finished", student=student, result=result))
                return result

            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(one, s): s for s in todo}
                try:
                    for fut in as_completed(futures):
                        graded.append(fut.result())
                        bar.advance(task)
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return BatchSummary(
        lab_id, graded, skipped, time.monotonic() - t0, lab.reference_report, lab.warnings
    )
