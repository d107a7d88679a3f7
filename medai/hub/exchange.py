"""The trusted side of nbgrader's exchange: submission receipts and per-trainee feedback.

nbgrader's default exchange is one shared folder whose isolation rests on Unix permissions
between student accounts. Here trainees have no accounts of their own, so each trainee's sandbox
mounts a private *drop* folder where nbgrader's ``inbound`` would be. This process, outside every
sandbox, is the only one that moves submissions on:

1. It polls each trainee's drop. A submission folder must be named ``<owner>+<lab>+<time>[+r]``
   with ``<owner>`` the drop's owner (no submitting in someone else's name).
2. It copies the folder into the course's trusted ``inbound`` (the one the formgrader's
   ``nbgrader collect`` reads) without following links, within size limits, and replaces
   ``timestamp.txt`` with the time the *server* first saw the submission. The trainee's own
   claim is kept in ``medai_receipt.json`` beside it, with a SHA-256 of every file.
3. It records a receipt (SQLite), so later edits or deletions in the drop change nothing.
4. It copies each feedback file the formgrader releases into the folder of the one trainee it
   belongs to (nbgrader names feedback ``md5(submission secret + notebook id)``; the secret is
   in the receipt), so nobody can list or read another trainee's feedback.

nbgrader has no hook for this (it trusts the student's clock and shares one inbound folder), so
it is written here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from medai.hub.layout import StateLayout

MAX_SUBMISSION_BYTES = 50 * 1024 * 1024
MAX_SUBMISSION_FILES = 500
NAME_RE = re.compile(r"^(?P<owner>[^+/]+)\+(?P<lab>[^+/]+)\+(?P<ts>[^+/]+)(\+[^+/]+)?$")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # nbgrader's default Exchange.timestamp_format

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    course TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    lab TEXT,
    received_at TEXT NOT NULL,
    client_timestamp TEXT,
    secret TEXT,
    notebooks TEXT,
    status TEXT NOT NULL,
    message TEXT,
    PRIMARY KEY (course, name)
);
"""


class Rejected(Exception):
    pass


@dataclass
class Receipt:
    course: str
    name: str
    owner: str
    lab: str | None
    received_at: str
    status: str  # "received" | "rejected"
    message: str = ""


def connect(layout: StateLayout) -> sqlite3.Connection:
    layout.receipts_db.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(layout.receipts_db)
    db.executescript(SCHEMA)
    return db


def now_timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime(TIMESTAMP_FORMAT)


def _copy_tree_nofollow(
    src_dir_fd: int, dest: Path, budget: list[int], hashes: dict, rel: str = ""
) -> None:
    """Copy a folder given by an open fd; regular files and folders only, links refused."""
    dest.mkdir()
    for entry in sorted(os.listdir(src_dir_fd)):
        st = os.stat(entry, dir_fd=src_dir_fd, follow_symlinks=False)
        child_rel = f"{rel}{entry}"
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=src_dir_fd)
            try:
                _copy_tree_nofollow(fd, dest / entry, budget, hashes, child_rel + "/")
            finally:
                os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            budget[1] -= 1
            if budget[1] < 0:
                raise Rejected(f"more than {MAX_SUBMISSION_FILES} files")
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=src_dir_fd)
            h = hashlib.sha256()
            with os.fdopen(fd, "rb") as src, open(dest / entry, "wb") as out:
                while block := src.read(1 << 20):
                    budget[0] -= len(block)
                    if budget[0] < 0:
                        raise Rejected(f"larger than {MAX_SUBMISSION_BYTES // 2**20} MiB")
                    h.update(block)
                    out.write(block)
            hashes[child_rel] = h.hexdigest()
        else:
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "a special file"
            raise Rejected(f"'{child_rel}' is {kind}; submissions may hold files and folders only")


class ExchangeKeeper:
    """One course's trusted exchange process (see the module docstring)."""

    def __init__(self, layout: StateLayout, course: str, users: list[str], settle: float = 1.0):
        self.layout = layout
        self.course = course
        self.users = users
        self.settle = settle
        self.db = connect(layout)
        self.first_seen: dict[str, str] = {}

    def known(self, name: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM receipts WHERE course=? AND name=?", (self.course, name)
        ).fetchone()
        return row is not None

    def _record(self, r: Receipt, client_ts=None, secret=None, notebooks=()) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO receipts VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                r.course,
                r.name,
                r.owner,
                r.lab,
                r.received_at,
                client_ts,
                secret,
                json.dumps(sorted(notebooks)),
                r.status,
                r.message,
            ),
        )
        self.db.commit()

    def scan(self) -> list[Receipt]:
        """Receive every complete new submission in every drop; return the new receipts."""
        out = []
        for user in self.users:
            drop = self.layout.drop(self.course, user)
            try:
                drop_fd = os.open(drop, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            try:
                for name in sorted(os.listdir(drop_fd)):
                    key = f"{user}/{name}"
                    if self.known(name):
                        continue
                    self.first_seen.setdefault(key, now_timestamp())
                    r = self._receive(drop_fd, user, name, self.first_seen[key])
                    if r is not None:
                        out.append(r)
                        self.first_seen.pop(key, None)
            finally:
                os.close(drop_fd)
        return out

    def _receive(self, drop_fd: int, user: str, name: str, seen_at: str) -> Receipt | None:
        m = NAME_RE.match(name)
        if not m or m["owner"] != user:
            why = (
                f"submitted in the name of '{m['owner']}'"
                if m
                else "not an nbgrader submission folder name"
            )
            r = Receipt(self.course, name, user, None, seen_at, "rejected", why)
            self._record(r)
            return r
        st = os.stat(name, dir_fd=drop_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            r = Receipt(self.course, name, user, m["lab"], seen_at, "rejected", "not a folder")
            self._record(r)
            return r
        # nbgrader writes timestamp.txt last; wait until it is there and nothing moved for a bit.
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=drop_fd)
        try:
            entries = os.listdir(fd)
            newest = max(
                [os.stat(e, dir_fd=fd, follow_symlinks=False).st_mtime for e in entries]
                + [st.st_mtime]
            )
            if "timestamp.txt" not in entries or time.time() - newest < self.settle:
                return None
            inbound = self.layout.exchange(self.course) / "inbound"
            tmp = inbound / f".receiving-{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            hashes: dict[str, str] = {}
            try:
                _copy_tree_nofollow(fd, tmp, [MAX_SUBMISSION_BYTES, MAX_SUBMISSION_FILES], hashes)
            except Rejected as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                r = Receipt(self.course, name, user, m["lab"], seen_at, "rejected", str(exc))
                self._record(r)
                return r
        finally:
            os.close(fd)
        client_ts = (tmp / "timestamp.txt").read_text(errors="replace")[:100]
        secret_file = tmp / "submission_secret.txt"
        secret = secret_file.read_text(errors="replace")[:200] if secret_file.exists() else None
        (tmp / "timestamp.txt").write_text(seen_at)
        receipt_doc = {
            "owner": user,
            "lab": m["lab"],
            "received_at": seen_at,
            "client_timestamp": client_ts,
            "sha256": hashes,
        }
        (tmp / "medai_receipt.json").write_text(json.dumps(receipt_doc, indent=1))
        notebooks = [Path(p).stem for p in hashes if p.endswith(".ipynb") and "/" not in p]
        os.replace(tmp, inbound / name)
        r = Receipt(self.course, name, user, m["lab"], seen_at, "received")
        self._record(r, client_ts, secret, notebooks)
        return r

    def distribute_feedback(self) -> int:
        """Copy released feedback to its owner's private feedback folder; return files copied."""
        owners: dict[str, str] = {}
        rows = self.db.execute(
            "SELECT owner, secret, notebooks FROM receipts WHERE course=? AND status='received'",
            (self.course,),
        )
        for owner, secret, notebooks in rows:
            if not secret:
                continue
            for nb in json.loads(notebooks or "[]"):
                h = hashlib.md5((secret + nb).encode()).hexdigest()  # nbgrader's feedback name
                owners[f"{h}.html"] = owner
        src = self.layout.exchange(self.course) / "feedback"
        copied = 0
        for f in src.glob("*.html"):
            owner = owners.get(f.name)
            if owner is None or f.is_symlink():
                continue
            dest = self.layout.user_feedback(self.course, owner) / f.name
            if dest.exists() and dest.stat().st_mtime >= f.stat().st_mtime:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".tmp")
            shutil.copyfile(f, tmp)
            os.replace(tmp, dest)
            copied += 1
        return copied

    def run(self, interval: float = 1.0, once: bool = False) -> None:
        while True:
            for r in self.scan():
                print(
                    f"[medai-exchange] {r.status}: {r.name} from {r.owner} at {r.received_at}"
                    + (f" ({r.message})" if r.message else ""),
                    flush=True,
                )
            n = self.distribute_feedback()
            if n:
                print(f"[medai-exchange] delivered {n} feedback file(s)", flush=True)
            if once:
                return
            time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Trusted exchange keeper for one course.")
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--course", required=True)
    ap.add_argument("--users", required=True, help="comma-separated user names")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--once", action="store_true")
    a = ap.parse_args(argv)
    keeper = ExchangeKeeper(
        StateLayout(a.state), a.course, [u for u in a.users.split(",") if u], a.settle
    )
    try:
        keeper.run(a.interval, a.once)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
