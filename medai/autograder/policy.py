"""The grading policy: sandbox limits, tamper rule, late policy, extensions.

:class:`Policy` is the one schema of a policy file; every field has a description, and
``medai config docs`` renders ``courses/reference/grading-policy.md`` from it (a test fails on
drift). The limits' default numbers are those of :class:`medai.isolation.limits.Limits`, the plain
data every sandbox is launched with; :meth:`LimitsModel.to_limits` is the one conversion.

Which policy applies: ``--policy FILE``, else the course file's ``grading_policy``, else the
defaults declared here. A policy file lists only what it changes.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medai.autograder import GradingError
from medai.isolation.limits import Limits

_JOB = Limits()  # a job's default limits: the numbers are declared there, once


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsModel(_Strict):
    """Per-submission sandbox limits. A submission that exceeds one is stopped and gets status
    `timeout`, `crashed` or `output-limit` with a message, and 0 for the tasks it had not
    recorded; the rest of the batch is unaffected."""

    wall_s: float = Field(
        _JOB.wall_s, gt=0, description="Wall clock for the whole notebook, in seconds."
    )
    cpu_s: int = Field(_JOB.cpu_s, gt=0, description="CPU time per process, in seconds.")
    memory_mb: int = Field(
        _JOB.memory_mb,
        ge=256,
        description="Memory in MiB: the address space of each process and, where the grader "
        "may create a memory cgroup, of the whole sandbox.",
    )
    processes: int = Field(
        _JOB.processes,
        ge=8,
        description="Processes and threads in the sandbox (a `pids` cgroup; `RLIMIT_NPROC` "
        "where no cgroup can be made).",
    )
    file_size_mb: int = Field(
        _JOB.file_size_mb,
        gt=0,
        description="Largest file the notebook may write, in MiB (in its scratch space).",
    )
    scratch_mb: int = Field(
        _JOB.scratch_mb, gt=0, description="Size of the writable scratch space, in MiB."
    )
    open_files: int = Field(
        _JOB.open_files, ge=32, description="Open files per process (`RLIMIT_NOFILE`)."
    )
    log_kb: int = Field(
        _JOB.log_kb,
        gt=0,
        description="Raw stdout/stderr of the sandbox kept in the submission's log, in KiB.",
    )
    result_mb: int = Field(
        _JOB.result_mb,
        gt=0,
        description="Recorded values coming back from the sandbox, in MiB; more is `output-limit`.",
    )

    def to_limits(self) -> Limits:
        """The sandbox limits of one submission (the only place policy becomes limits)."""
        return _JOB.with_(**self.model_dump())


class SubmissionModel(_Strict):
    """What a submission may be."""

    notebook_mb: float = Field(
        10, gt=0, description="Largest notebook, in MB; a larger one is rejected with a message."
    )
    extra_files: Literal["ignore"] = Field(
        "ignore",
        description="Files the lab did not release: ignored, and listed in the submission's "
        "report.",
    )


class LateModel(_Strict):
    """Late submissions, measured from the gradebook's due date (`nbgrader db assignment add
    LAB --duedate=...`) or `due` of the policy, after any extension. The penalty is a share of
    the autograded score, stored as nbgrader's `late_submission_penalty`, so formgrader and
    `medai grades export` show it."""

    policy: Literal["none", "zero", "percent_per_day"] = Field(
        "percent_per_day",
        description="`none`: no penalty; `zero`: a late submission scores 0; "
        "`percent_per_day`: `percent_per_day` per started day late, at most `cap_percent`.",
    )
    percent_per_day: float = Field(
        10, ge=0, le=100, description="Percent of the autograded score per started day late."
    )
    cap_percent: float = Field(
        50, ge=0, le=100, description="The penalty never exceeds this percent."
    )
    grace_minutes: float = Field(
        5, ge=0, description="Minutes after the due date that still count as on time."
    )


class Policy(_Strict):
    """Top level of a grading policy file. Every key is optional."""

    limits: LimitsModel = Field(
        default_factory=LimitsModel, description="Per-submission sandbox limits."
    )
    submission: SubmissionModel = Field(
        default_factory=SubmissionModel, description="What a submission may be."
    )
    on_tamper: Literal["zero", "restore"] = Field(
        "zero",
        description="What a tampered graded cell (edited, deleted, duplicated, re-typed, "
        "re-pointed) earns. `zero`: restored and its task scores 0 (fail closed); `restore`: "
        "restored from the gradebook and graded normally. Both are flagged for review in "
        "formgrader.",
    )
    late: LateModel = Field(default_factory=LateModel, description="Late submissions.")
    due: dict[str, dt.datetime] = Field(
        default_factory=dict,
        description="Lab id -> ISO date-time, used when the gradebook has no due date for it.",
    )
    extensions: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Student -> {lab id: hours} added to the due date, e.g. "
        "`{trainee2: {pilot: 48}}`.",
    )

    def late_fraction(self, student: str, lab: str, seconds_late: float) -> float:
        """Share of the autograded score removed for a submission ``seconds_late`` after the due
        date (before the student's extension for ``lab`` is applied)."""
        seconds_late -= self.extensions.get(student, {}).get(lab, 0.0) * 3600
        seconds_late -= self.late.grace_minutes * 60
        if seconds_late <= 0 or self.late.policy == "none":
            return 0.0
        if self.late.policy == "zero":
            return 1.0
        days = math.ceil(seconds_late / 86400)
        return min(self.late.cap_percent, days * self.late.percent_per_day) / 100.0


REFERENCE_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("(top level)", Policy),
    ("limits", LimitsModel),
    ("submission", SubmissionModel),
    ("late", LateModel),
]


def render_reference() -> str:
    """Markdown reference of every key of a grading policy file."""
    from medai.reference import render_models

    return render_models(
        "Grading policy reference",
        "medai/autograder/policy.py",
        [
            "A grading policy (YAML) sets the sandbox limits, the tamper rule, the late policy,",
            "due dates and extensions of `medai grade` and of the hub's grading service. Every",
            "key is optional: a file lists only what it changes, the rest keeps the defaults",
            "below. Which file applies: `medai grade --policy FILE`, else the course file's",
            "`grading_policy` (see the [course configuration](course-config.md)), else these",
            "defaults. The demo course uses `autograder/policy.yaml` of the repository.",
        ],
        REFERENCE_SECTIONS,
        [""],
    )


def load_policy(path: Path | str | None = None) -> Policy:
    """Read the policy file ``path``; None: the defaults declared in :class:`Policy`."""
    if path is None:
        return Policy()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise GradingError(f"policy file {path} not found") from None
    except yaml.YAMLError as exc:
        raise GradingError(f"{path} is not valid YAML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10]]
        raise GradingError(f"{path} is not a valid grading policy:\n" + "\n".join(lines)) from None
