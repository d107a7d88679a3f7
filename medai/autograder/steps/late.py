"""Late penalty (step 7): the fraction of the autograded score a late submission loses.

The due date is the gradebook's (nbgrader's ``duedate``) or the policy's; the fraction follows
the policy's late rules and a student's extension (:meth:`medai.autograder.policy.Policy.late_fraction`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from medai.autograder.policy import Policy

__all__ = ["Late", "late_penalty"]


@dataclass(frozen=True)
class Late:
    fraction: float = 0.0
    penalty: float = 0.0  # points deducted from the autograded score
    message: str | None = None


def late_penalty(
    policy: Policy,
    student: str,
    lab_id: str,
    duedate: dt.datetime | None,
    submitted: dt.datetime | None,
    auto_score: float,
) -> Late:
    """The late deduction of one submission (none without a due date or a submission time)."""
    due = duedate or policy.due.get(lab_id)
    if due is None or submitted is None:
        return Late()
    due_utc = due if due.tzinfo else due.replace(tzinfo=dt.UTC)
    ts_utc = submitted if submitted.tzinfo else submitted.replace(tzinfo=dt.UTC)
    seconds = (ts_utc - due_utc).total_seconds()
    frac = policy.late_fraction(student, lab_id, seconds)
    if not frac:
        return Late(frac)
    return Late(
        frac,
        round(frac * auto_score, 4),
        f"late by {seconds / 3600:.1f} h: {frac:.0%} of the autograded score deducted",
    )
