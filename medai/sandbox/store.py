"""The sandbox's own state (SQLite, in the sandbox's folder, bound into no trainee sandbox):
access requests and grants, jobs with their decisions, privacy budgets spent, the row sets a
trainee has had released (for the differencing rule) and the submission times (rate limit)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS access (user TEXT, dataset TEXT, purpose TEXT, status TEXT,
  requested REAL, decided REAL, decided_by TEXT, PRIMARY KEY (user, dataset));
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, user TEXT, dataset TEXT, code TEXT,
  function TEXT, status TEXT, rule TEXT, message TEXT, output TEXT, detail TEXT,
  submitted REAL, visible_at REAL, epsilon REAL DEFAULT 0);
CREATE TABLE IF NOT EXISTS budget (user TEXT, dataset TEXT, spent REAL,
  PRIMARY KEY (user, dataset));
CREATE TABLE IF NOT EXISTS subsets (user TEXT, dataset TEXT, mask BLOB);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.executescript(SCHEMA)

    def _q(self, sql: str, *args) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    # access
    def request_access(self, user: str, dataset: str, purpose: str) -> str:
        old = self.access(user, dataset)
        if old and old["status"] == "granted":
            return "granted"
        self._q(
            "INSERT OR REPLACE INTO access VALUES (?, ?, ?, 'pending', ?, NULL, NULL)",
            user,
            dataset,
            purpose,
            time.time(),
        )
        return "pending"

    def decide_access(self, user: str, dataset: str, grant: bool, by: str) -> bool:
        rows = self._q(
            "UPDATE access SET status=?, decided=?, decided_by=? WHERE user=? AND dataset=? "
            "RETURNING user",
            "granted" if grant else "refused",
            time.time(),
            by,
            user,
            dataset,
        )
        return bool(rows)

    def access(self, user: str, dataset: str) -> dict | None:
        rows = self._q("SELECT * FROM access WHERE user=? AND dataset=?", user, dataset)
        return dict(rows[0]) if rows else None

    def access_requests(self, datasets: list[str]) -> list[dict]:
        marks = ",".join("?" * len(datasets)) or "''"
        return [
            dict(r)
            for r in self._q(
                f"SELECT * FROM access WHERE dataset IN ({marks}) ORDER BY requested", *datasets
            )
        ]

    # jobs
    def new_job(self, user: str, dataset: str, code: str, function: str) -> str:
        job = uuid.uuid4().hex[:16]
        self._q(
            "INSERT INTO jobs (id, user, dataset, code, function, status, submitted) "
            "VALUES (?, ?, ?, ?, ?, 'running', ?)",
            job,
            user,
            dataset,
            code,
            function,
            time.time(),
        )
        return job

    def finish_job(
        self,
        job: str,
        status: str,
        rule: str,
        message: str,
        output,
        detail,
        visible_at: float,
        epsilon: float = 0.0,
    ) -> None:
        self._q(
            "UPDATE jobs SET status=?, rule=?, message=?, output=?, detail=?, visible_at=?, "
            "epsilon=? WHERE id=?",
            status,
            rule,
            message,
            None if output is None else json.dumps(output),
            json.dumps(detail or {}),
            visible_at,
            epsilon,
            job,
        )

    def job(self, job: str) -> dict | None:
        rows = self._q("SELECT * FROM jobs WHERE id=?", job)
        if not rows:
            return None
        d = dict(rows[0])
        d["output"] = json.loads(d["output"]) if d["output"] else None
        d["detail"] = json.loads(d["detail"]) if d["detail"] else {}
        return d

    def jobs(self, status: str | None = None, datasets: list[str] | None = None) -> list[dict]:
        rows = self._q("SELECT id FROM jobs ORDER BY submitted")
        out = [self.job(r["id"]) for r in rows]
        return [
            j
            for j in out
            if (status is None or j["status"] == status)
            and (datasets is None or j["dataset"] in datasets)
        ]

    def recent_jobs(self, user: str, dataset: str, since: float) -> int:
        return self._q(
            "SELECT COUNT(*) AS n FROM jobs WHERE user=? AND dataset=? AND submitted>=?",
            user,
            dataset,
            since,
        )[0]["n"]

    # budgets and released row sets
    def spent(self, user: str, dataset: str) -> float:
        rows = self._q("SELECT spent FROM budget WHERE user=? AND dataset=?", user, dataset)
        return float(rows[0]["spent"]) if rows else 0.0

    def spend(self, user: str, dataset: str, eps: float) -> None:
        self._q(
            "INSERT INTO budget VALUES (?, ?, ?) ON CONFLICT (user, dataset) DO UPDATE SET "
            "spent = spent + excluded.spent",
            user,
            dataset,
            eps,
        )

    def reset_budget(self, user: str, dataset: str) -> None:
        self._q("DELETE FROM budget WHERE user=? AND dataset=?", user, dataset)

    def usage(self) -> list[dict]:
        rows = self._q(
            "SELECT user, dataset, COUNT(*) AS jobs, SUM(status='released') AS "
            "released, SUM(status='held') AS held, SUM(status='refused') AS refused "
            "FROM jobs GROUP BY user, dataset ORDER BY user, dataset"
        )
        out = []
        for r in rows:
            d = dict(r)
            d["epsilon_spent"] = self.spent(d["user"], d["dataset"])
            out.append(d)
        return out

    def subsets(self, user: str, dataset: str, n: int) -> list[np.ndarray]:
        rows = self._q("SELECT mask FROM subsets WHERE user=? AND dataset=?", user, dataset)
        return [np.unpackbits(np.frombuffer(r["mask"], np.uint8))[:n].astype(bool) for r in rows]

    def add_subsets(self, user: str, dataset: str, masks: list[np.ndarray]) -> None:
        for m in masks:
            self._q("INSERT INTO subsets VALUES (?, ?, ?)", user, dataset, np.packbits(m).tobytes())
