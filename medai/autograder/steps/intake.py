"""Intake (step 3): a collected submission folder read as plain data, before anything runs.

Its fingerprint (the batch's "already done" test), the submission time from nbgrader's
``timestamp.txt``, files the grader ignores, and each notebook loaded within the size limit and
sanitized against the gradebook (graded cells restored, tampering recorded).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medai.autograder.sanitize import InvalidSubmission, Sanitized, load_submission, sanitize
from medai.autograder.steps.prepare import Lab

__all__ = ["BOOKKEEPING", "Intake", "extra_files", "intake", "submission_fingerprint"]

# Files the submission's carriers add beside the trainee's work, never the trainee's own:
# nbgrader's submit writes timestamp.txt and submission_secret.txt
# (nbgrader/exchange/default/submit.py, copy_files); the exchange keeper writes
# medai_receipt.json (medai/hub/exchange.py, _receive).
BOOKKEEPING = frozenset({"timestamp.txt", "submission_secret.txt", "medai_receipt.json"})


def submission_fingerprint(sub_dir: Path) -> str:
    """A digest of the names, sizes and modification times of a submission's files."""
    h = hashlib.sha256()
    for p in sorted(sub_dir.rglob("*")):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            h.update(f"{p.relative_to(sub_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def extra_files(sub_dir: Path, lab: Lab) -> list[str]:
    """Files of the submission that are neither the lab's notebooks and released files nor
    what nbgrader and the exchange keeper add (:data:`BOOKKEEPING`)."""
    known = {f"{nb.name}.ipynb" for nb in lab.notebooks} | {p.name for p in lab.release_files}
    known |= BOOKKEEPING
    return sorted(
        str(p.relative_to(sub_dir))
        for p in sub_dir.rglob("*")
        if p.is_file() and p.relative_to(sub_dir).parts[0] not in known
    )


@dataclass
class Intake:
    """A submission as read, before it runs."""

    fingerprint: str
    timestamp: dt.datetime | None = None
    messages: list[str] = field(default_factory=list)
    notebooks: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> status/message
    sanitized: dict[str, Sanitized] = field(default_factory=dict)
    tamper: list[dict[str, Any]] = field(default_factory=list)


def read_timestamp(sub_dir: Path) -> tuple[dt.datetime | None, str | None]:
    """The time in nbgrader's ``timestamp.txt``, and a message when it is unreadable."""
    ts_file = sub_dir / "timestamp.txt"
    if not ts_file.exists():
        return None, None
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(ts_file.read_text().strip()), None
    except ValueError:
        return None, "timestamp.txt is unreadable; treated as on time"


def intake(lab: Lab, sub_dir: Path, notebook_bytes: int) -> Intake:
    """Read the submission in ``sub_dir``: notebooks at most ``notebook_bytes`` each."""
    got = Intake(submission_fingerprint(sub_dir))
    got.timestamp, problem = read_timestamp(sub_dir)
    got.messages += [problem] if problem else []
    extra = extra_files(sub_dir, lab)
    if extra:
        shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
        got.messages.append(f"{len(extra)} extra file(s) ignored: {shown}")
    for info in lab.notebooks:
        path = sub_dir / f"{info.name}.ipynb"
        try:
            nb = load_submission(path, notebook_bytes)
        except InvalidSubmission as exc:
            got.notebooks[info.name] = {"status": "invalid", "message": str(exc)}
            got.messages.append(str(exc))
            if not path.exists():
                others = sorted(p.name for p in sub_dir.glob("*.ipynb"))
                if others:
                    got.messages.append(f"notebooks found instead: {others} (renamed?)")
            continue
        s = sanitize(nb, info, lab.release_tags)
        got.sanitized[info.name] = s
        got.notebooks[info.name] = {"status": "ok"}
        got.tamper += [dict(e.as_dict(), notebook=info.name) for e in s.events]
    return got
