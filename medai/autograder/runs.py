"""Grading runs started from the browser: collect, then grade, with progress as plain data.

The grading service (:mod:`medai.hub.grading`) is a thin web layer over :class:`GradingRuns`.
A run is the same pipeline as ``medai grade`` (:func:`medai.autograder.batch.grade_lab`: every
submission in its own bubblewrap sandbox, in parallel), preceded by nbgrader's collect from the
trusted inbound (:mod:`medai.autograder.collect`). One run per lab at a time: asking again while
one runs returns the running one. Runs live in memory (the results themselves are the files
``grade_lab`` writes), so a restarted service shows the stored results, not old progress.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medai.autograder import GradingError
from medai.autograder.collect import check_id, received
from medai.autograder.sandbox import SandboxBackend, get_backend

if TYPE_CHECKING:
    from medai.autograder.batch import BatchEvent
    from medai.autograder.steps.layout import Course
    from medai.autograder.steps.result import GradeResult

# medai.autograder.batch (nbformat, numpy: seconds to import) is imported when first needed, so
# the service answers the hub at once; medai.hub.grading warms it up right after it starts.

log = logging.getLogger("medai.grading")

ACTIVE = ("collecting", "reference", "grading")
KEEP_FINISHED = 20  # finished runs remembered per lab


@dataclass
class GradingRun:
    """One request to grade a lab (or one student of it); what the page shows while it runs."""

    id: str
    lab: str
    student: str | None
    force: bool
    requested_by: str
    state: str = "collecting"  # collecting | reference | grading | done | failed
    created: float = field(default_factory=time.time)
    finished: float | None = None
    total: int = 0  # submissions to grade in this run
    done: int = 0
    current: list[str] = field(default_factory=list)  # being graded now
    skipped: list[str] = field(default_factory=list)  # unchanged since their last grading
    collect_log: str = ""
    events: list[str] = field(default_factory=list)  # what happened, in order, for the page
    error: str = ""
    results: list[dict] = field(default_factory=list)  # result_row() per student, when done

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def as_json(self) -> dict:
        out = asdict(self)
        out["active"] = self.active
        out["current"] = sorted(self.current)
        return out


def result_row(result: GradeResult, graded_now: bool) -> dict:
    """The per-student line of the result table."""
    messages = list(result.messages)
    for gid, t in result.tasks.items():
        score = "hand" if t.score is None else f"{t.score:g}"
        messages.append(f"{gid}: {score}/{t.max or 0:g} {t.message}".strip())
    auto = float(result.auto_score or 0.0)
    penalty = float(result.late_penalty or 0.0)
    return {
        "student": result.student,
        "status": result.status,
        "score": round(auto - penalty, 4),
        "auto_score": auto,
        "late_penalty": penalty,
        "max": float(result.max_score or 0.0),
        "tampered": bool(result.tamper),
        "messages": messages,
        "graded_now": graded_now,
    }


def load_result(course: Course, lab_id: str, student: str) -> GradeResult | None:
    """The stored result of one student, or None (none yet, or unreadable)."""
    from medai.autograder.steps.result import read_result

    return read_result(course.root / "grading" / lab_id / "results" / f"{student}.json")


class GradingRuns:
    """The runs of one course. Thread-safe; each run works in its own thread."""

    def __init__(
        self,
        course_dir: Path,
        course_id: str,
        exchange_root: Path,
        labs: dict[str, str],
        *,
        data_root: Path | None = None,
        policy_file: Path | None = None,
        workers: int | None = None,
        backend: Callable[[], SandboxBackend] = get_backend,
    ) -> None:
        self.course_dir = Path(course_dir)
        self.course_id = course_id
        self.exchange_root = Path(exchange_root)
        self.labs = dict(labs)  # id -> title
        self.data_root = data_root
        self.policy_file = policy_file
        self.workers = workers
        self.backend = backend
        self._lock = threading.Lock()
        self._runs: dict[str, GradingRun] = {}
        self._by_lab: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ reading

    def course(self) -> Course:
        from medai.autograder.steps.layout import open_course

        # never reads the course's nbgrader_config.py: see open_course
        return open_course(self.course_dir, course_id=self.course_id)

    @property
    def inbound(self) -> Path:
        return self.exchange_root / self.course_id / "inbound"

    def check_lab(self, lab_id: str) -> str:
        check_id("lab", lab_id)
        if lab_id not in self.labs:
            known = ", ".join(sorted(self.labs)) or "none"
            raise GradingError(f"lab '{lab_id}' is not a lab of this course (labs: {known})")
        return lab_id

    def overview(self) -> list[dict]:
        """Each lab with its counts: students with a received, collected and graded submission."""
        from medai.autograder.steps.layout import list_students

        course = self.course()
        out = []
        for lab_id, title in self.labs.items():
            results = course.root / "grading" / lab_id / "results"
            run = self.latest(lab_id)
            out.append(
                {
                    "id": lab_id,
                    "title": title,
                    "received": sorted(received(self.inbound, lab_id)),
                    "collected": len(list_students(course, lab_id)),
                    "graded": len(list(results.glob("*.json"))) if results.is_dir() else 0,
                    "run": self.describe(run) if run else None,
                }
            )
        return out

    def results(self, lab_id: str) -> list[dict]:
        """The stored result of every collected submission of ``lab_id``."""
        from medai.autograder.steps.layout import list_students

        course = self.course()
        self.check_lab(lab_id)
        rows = []
        for student in list_students(course, lab_id):
            r = load_result(course, lab_id, student)
            if r is not None:
                rows.append(result_row(r, graded_now=False))
        return rows

    def describe(self, run: GradingRun) -> dict:
        """``run`` as JSON-able data, consistent (worker threads change runs under the lock)."""
        with self._lock:
            return run.as_json()

    def get(self, run_id: str) -> GradingRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def latest(self, lab_id: str) -> GradingRun | None:
        with self._lock:
            ids = self._by_lab.get(lab_id, [])
            return self._runs[ids[-1]] if ids else None

    # ------------------------------------------------------------------ starting

    def start(
        self, lab_id: str, *, student: str | None = None, force: bool = False, user: str = ""
    ) -> tuple[GradingRun, bool]:
        """Start grading ``lab_id`` (or one student of it); return ``(run, started)``.

        While a run of the lab is active, no second one starts: the active one comes back with
        ``started`` False.
        """
        self.check_lab(lab_id)
        if student is not None:
            check_id("student", student)
            if student not in received(self.inbound, lab_id):
                raise GradingError(
                    f"no submission of '{lab_id}' from '{student}' has been received; "
                    "the trainee submits it from the Assignments panel in JupyterLab"
                )
        with self._lock:
            ids = self._by_lab.setdefault(lab_id, [])
            if ids and self._runs[ids[-1]].active:
                return self._runs[ids[-1]], False
            run = GradingRun(uuid.uuid4().hex[:12], lab_id, student, force, user)
            self._runs[run.id] = run
            ids.append(run.id)
            for old in ids[:-KEEP_FINISHED]:
                self._runs.pop(old, None)
            del ids[:-KEEP_FINISHED]
        threading.Thread(
            target=self._work, args=(run,), name=f"grade-{lab_id}", daemon=True
        ).start()
        return run, True

    def wait(self, run: GradingRun, timeout: float | None = None) -> GradingRun:
        """Block until ``run`` is finished (for tests and the CLI-like callers)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while run.active:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"grading run {run.id} of '{run.lab}' still running")
            time.sleep(0.1)
        return run

    # ------------------------------------------------------------------ working

    def _note(self, run: GradingRun, text: str) -> None:
        run.events.append(f"{time.strftime('%H:%M:%S')} {text}")

    def _on_event(self, run: GradingRun) -> Callable[[BatchEvent], None]:
        def on_event(event: BatchEvent) -> None:
            with self._lock:
                if event.kind == "planned":
                    run.total, run.skipped = len(event.todo), list(event.skipped)
                    kept = f", {len(event.skipped)} unchanged (kept)" if event.skipped else ""
                    self._note(run, f"{run.total} submission(s) to grade{kept}")
                elif event.kind == "reference":
                    run.state = "reference"
                    self._note(run, "running the reference solution")
                elif event.kind == "started":
                    run.state = "grading"
                    run.current.append(event.student)
                    self._note(run, f"{event.student}: grading in a sandbox")
                elif event.kind == "finished":
                    if event.student in run.current:
                        run.current.remove(event.student)
                    run.done += 1
                    if event.result is not None:
                        r = result_row(event.result, graded_now=True)
                        self._note(
                            run,
                            f"{event.student}: {r['score']:g} / {r['max']:g} {r['status']} "
                            f"({run.done} of {run.total} done)",
                        )

        return on_event

    def _work(self, run: GradingRun) -> None:
        from medai.autograder.batch import grade_lab
        from medai.autograder.collect import collect
        from medai.autograder.policy import load_policy
        from medai.autograder.steps.layout import list_students, refuse_links

        t0 = time.monotonic()
        who = f" for {run.requested_by}" if run.requested_by else ""
        target = f"{run.lab}" + (f" ({run.student})" if run.student else "")
        log.info("grading run %s: %s%s", run.id, target, who)
        try:
            course = self.course()
            refuse_links(course, run.lab)  # before collect writes into submitted/ (as root)
            with self._lock:
                self._note(run, f"collecting {target} from the inbound (nbgrader collect)")
            report = collect(course, run.lab, self.exchange_root, run.student)
            with self._lock:
                run.collect_log = report.log
            if not report.ok:
                raise GradingError(f"nbgrader collect failed:\n{report.error or report.log}")
            if run.student is not None and run.student not in list_students(course, run.lab):
                raise GradingError(f"nothing was collected for '{run.student}':\n{report.log}")
            summary = grade_lab(
                course,
                run.lab,
                backend=self.backend(),
                policy=load_policy(self.policy_file),
                data_root=self.data_root,
                workers=self.workers,
                students=[run.student] if run.student else None,
                force=run.force,
                progress=False,
                on_event=self._on_event(run),
            )
            rows = [result_row(r, graded_now=True) for r in summary.graded]
            for student in summary.skipped:
                r = load_result(course, run.lab, student)
                if r is not None:
                    rows.append(result_row(r, graded_now=False))
            with self._lock:
                run.results = sorted(rows, key=lambda r: str(r["student"]))
                run.state = "done"
                self._note(run, f"done: {run.done} graded")
        except GradingError as exc:
            with self._lock:
                run.error, run.state = str(exc), "failed"
                self._note(run, "failed")
        except Exception as exc:  # reported in the page; the traceback goes to the service log
            log.error("grading run %s failed:\n%s", run.id, traceback.format_exc())
            with self._lock:
                run.error = f"internal error: {type(exc).__name__}: {exc} (see the hub log)"
                run.state = "failed"
                self._note(run, "failed")
        finally:
            with self._lock:
                run.current = []
                run.finished = time.time()
            log.info(
                "grading run %s: %s in %.1f s%s",
                run.id,
                run.state,
                time.monotonic() - t0,
                f" ({run.error.splitlines()[0]})" if run.error else "",
            )
