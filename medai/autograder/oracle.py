"""The simulated clinician of active-learning tasks: the trusted side that answers label requests.

A ``model`` task with an ``oracle:`` (see :class:`medai.autograder.tasks.OracleSpec`) lets the
notebook ask an expert for the labels of cases it chooses from a pool. In the grader the pool's
labels are hidden: :class:`OracleServer` holds them outside the sandbox and answers each request
the kernel makes, within the task's budget, so a label reaches the kernel only when it was asked
for. The sandbox backend carries the requests (``SandboxJob.oracle``); the kernel side is
:func:`medai.autograder.lab.clinician`.

Protocol, one JSON object per line::

    kernel -> grader  (on the result pipe)   {"type": "oracle", "task": "<id>", "ids": ["A1", ...]}
    grader -> kernel  (on the answer pipe)   {"labels": [2, 0, ...], "remaining": 37}
                                             {"error": "what was wrong and what to do"}

Everything in a request is untrusted: a request that is not of this shape, names another task,
asks for ids outside the pool, or for more new labels than the budget has left is refused with a
reason and costs nothing. Ids asked again are answered again at no cost (the clinician remembers).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_REQUESTS", "OracleServer", "PoolLabels"]

MAX_REQUESTS = 10_000  # per run and task: a loop that asks one id at a time stays well below
MAX_IDS_PER_REQUEST = 100_000


@dataclass
class PoolLabels:
    """The graded pool of one task: its hidden labels by id (text) and the budget of a run."""

    labels: dict[str, Any]
    budget: int


@dataclass
class _Usage:
    answered: set[str] = field(default_factory=set)
    requests: int = 0
    refused: int = 0


def _key(v: Any) -> str | None:
    """An id as text (as the grader compares ids everywhere); None if it is not an id."""
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        return None
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else None
    return str(v)


def _plain(v: Any) -> Any:
    """A label as a JSON scalar (numpy scalars from the label file become Python ones)."""
    return v.item() if hasattr(v, "item") else v


class OracleServer:
    """Answers the label requests of one sandbox run (one per run: budgets do not carry over)."""

    def __init__(self, pools: dict[str, PoolLabels]) -> None:
        self.pools = pools
        self._usage = {tid: _Usage() for tid in pools}
        self._lock = threading.Lock()

    def answer(self, request: Any) -> dict:
        """The reply to one request record (already parsed from JSON, otherwise untrusted)."""
        with self._lock:
            return self._answer(request)

    def _answer(self, req: Any) -> dict:
        if not isinstance(req, dict) or not isinstance(req.get("task"), str):
            return {"error": 'a request is {"type": "oracle", "task": <task id>, "ids": [...]}'}
        tid = req["task"]
        if tid not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none"
            return {"error": f"no clinician for task {tid[:80]!r} (tasks with one: {known})"}
        pool, usage = self.pools[tid], self._usage[tid]
        usage.requests += 1
        if usage.requests > MAX_REQUESTS:
            usage.refused += 1
            return {"error": f"more than {MAX_REQUESTS} requests in one run: ask in batches"}
        ids = req.get("ids")
        if not isinstance(ids, list) or len(ids) > MAX_IDS_PER_REQUEST:
            usage.refused += 1
            return {"error": "ids must be a list of case ids from the pool"}
        keys = [_key(v) for v in ids]
        bad = [repr(ids[i])[:40] for i, k in enumerate(keys) if k is None or k not in pool.labels]
        if bad:
            usage.refused += 1
            shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
            return {
                "error": f"{len(bad)} id(s) are not cases of the pool ({shown}); ask only about "
                "ids from clinician(...).ids"
            }
        new = {k for k in keys if k not in usage.answered}
        left = pool.budget - len(usage.answered)
        if len(new) > left:
            usage.refused += 1
            return {
                "error": f"the clinician has {left} of {pool.budget} labels left and this asks "
                f"for {len(new)} new ones; nothing was answered"
            }
        usage.answered |= new
        return {
            "labels": [_plain(pool.labels[k]) for k in keys],
            "remaining": pool.budget - len(usage.answered),
        }

    def usage(self) -> dict[str, dict[str, int]]:
        """Per task: labels given, requests made and refused (for the grading log)."""
        with self._lock:
            return {
                tid: {"labels": len(u.answered), "requests": u.requests, "refused": u.refused}
                for tid, u in self._usage.items()
            }
