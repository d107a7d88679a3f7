"""The trusted side of nbgrader's exchange: submission receipts and per-trainee feedback.

nbgrader's default exchange is one shared folder whose isolation rests on Unix permissions
between student accounts. Here trainees have no accounts of their own, so each trainee's sandbox
mounts a private *drop* folder where nbgrader's ``inbound`` would be. This process, outside every
sandbox, is the only one that moves submissions on:

1. It polls each trainee's drop. A submission folder must be named ``<owner>+<lab>+<time>[+r]``
   with ``<owner>`` the drop's owner (no submitting in someone else's name).
2. It copies the folder into a staging folder the formgrader cannot see, without following
   links and within the limits below, then moves the finished copy into the course's trusted
   ``inbound`` (the one the formgrader's ``nbgrader collect`` reads) in one rename. It replaces
   ``timestamp.txt`` with the *server's* time of the submission's last change (the newest inode
   change time, ``ctime``, in the copied tree: the kernel sets it, and nobody without the right
   to set the clock can move it back). The trainee's own claim is kept in
   ``medai_receipt.json`` beside it, with a SHA-256 of every file.
3. It records a receipt (SQLite), so later edits or deletions in the drop change nothing.
4. It copies each feedback file the formgrader releases into the folder of the one trainee it
   belongs to (nbgrader names feedback ``md5(submission secret + notebook id)``; the secret is
   in the receipt), so nobody can list or read another trainee's feedback.
5. After each receipt it rewrites ``receipts.txt`` (and ``receipts.json``) in that trainee's
   feedback folder, which their sandbox mounts read-only at
   ``/srv/medai/exchange/<course>/feedback/``: every submission, received or rejected, with the
   server's time and the reason for a rejection.

A drop is trainee-controlled input, so it is handled as hostile. A submission that holds
anything but ordinary files and folders (links, hard links, named pipes, sockets, devices), odd
names (control characters such as newlines, bytes that are not UTF-8, names of dots only, paths
longer than :data:`MAX_PATH_BYTES`), too deep a tree, too many or too large files, or that
changes while it is copied, is rejected with its reason; nothing of it reaches ``inbound``.
Every submission and every drop is handled in its own error boundary, each submission within
:data:`SUBMISSION_SECONDS` and each scan within :data:`SCAN_SECONDS`, so one trainee's drop
cannot stop, stall or back-date anyone else's submissions. The copy is iterative (no recursion)
and never opens a special file (``O_NONBLOCK``, then ``fstat`` before reading).

nbgrader has no hook for this (it trusts the student's clock and shares one inbound folder), so
it is written here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from medai.hub.layout import StateLayout

log = logging.getLogger("medai.exchange")

# Limits of one submission (nbgrader's own submissions of a lab are far below every one).
MAX_SUBMISSION_BYTES = 50 * 1024 * 1024
MAX_SUBMISSION_FILES = 500
MAX_SUBMISSION_FOLDERS = 100
MAX_DEPTH = 16  # folders below the submission folder
MAX_PATH_BYTES = 1024  # a path inside the submission, in UTF-8
SUBMISSION_SECONDS = 10.0  # to copy one submission
# Limits of one scan of every drop.
SCAN_SECONDS = 10.0
MAX_DROP_ENTRIES = 1000  # a drop holding more is not scanned until its owner tidies it
PER_USER_PER_SCAN = 3  # new submissions handled per drop and scan (the rest wait their turn)
SERVER_ERROR_TRIES = 3  # unexpected errors on one submission before it is rejected

NAME_RE = re.compile(r"^(?P<owner>[^+/]+)\+(?P<lab>[^+/]+)\+(?P<ts>[^+/]+)(\+[^+/]+)?$")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"  # nbgrader's default Exchange.timestamp_format
STATUS_TXT = "receipts.txt"
STATUS_JSON = "receipts.json"
STAGING_DIR = ".receiving"  # below exchange/<course>/, beside inbound (formgrader can't see it)

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
CREATE TABLE IF NOT EXISTS rejections (
    course TEXT NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    lab TEXT,
    rejected_at TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (course, owner, name)
);
"""
# Received submissions go to ``receipts`` (their names start with their owner, so they are
# unique per course). Rejections go to ``rejections``, keyed by the drop they were found in: a
# folder named ``bob+...`` dropped by alice must not shadow bob's own submission of that name.


class Rejected(Exception):
    """This submission is refused; the message (shown to its owner) says why."""


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


def format_time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime(TIMESTAMP_FORMAT)


def now_timestamp() -> str:
    return format_time(time.time())


def shown(name: str, limit: int = 80) -> str:
    """A name as it may be printed: bytes that are not UTF-8 and control characters escaped,
    long names shortened (names are trainee input; they go into logs and messages)."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def name_problem(name: str) -> str | None:
    """Why a file or folder name is not accepted in a submission (None: it is fine)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not valid UTF-8"
    if not name.isprintable():
        return "has a control character (such as a newline) in its name"
    if not name.strip(". "):
        return "has a name made of dots and spaces only"
    return None


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "a special file"


@dataclass
class _Budget:
    bytes: int = MAX_SUBMISSION_BYTES
    files: int = MAX_SUBMISSION_FILES
    folders: int = MAX_SUBMISSION_FOLDERS
    seconds: float = SUBMISSION_SECONDS
    deadline: float = 0.0
    newest_ctime: float = 0.0
    hashes: dict[str, str] = field(default_factory=dict)

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise Rejected(
                f"the submission took longer than {self.seconds:g} s to receive; "
                "submit a smaller folder"
            )


_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _changed(rel: str, detail: str = "") -> Rejected:
    where = f"'{shown(rel)}'" if rel else "the submission folder"
    return Rejected(
        f"{where} changed while it was being received{detail}; wait until nothing writes to it "
        "and submit again"
    )


def _unreadable_or_changed(rel: str, exc: OSError) -> Rejected:
    """The Rejected for a failed operation on the trainee's side of the copy."""
    if isinstance(exc, PermissionError):  # e.g. chmod 000: a keeper that is not root can't read
        where = f"'{shown(rel)}'" if rel else "the submission folder"
        return Rejected(f"{where} cannot be read by the server; make it readable and submit again")
    return _changed(rel, f" ({exc.strerror})")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_mtime_ns, a.st_ctime_ns, a.st_size) == (
        b.st_dev,
        b.st_ino,
        b.st_mtime_ns,
        b.st_ctime_ns,
        b.st_size,
    )


def _copy_file(dir_fd: int, name: str, rel: str, st: os.stat_result, dest: Path, b: _Budget):
    if st.st_nlink > 1:
        raise Rejected(f"'{shown(rel)}' is a hard link; a submission may hold only its own files")
    if st.st_size > b.bytes:
        raise Rejected(f"the submission is larger than {MAX_SUBMISSION_BYTES // 2**20} MiB")
    try:
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    except OSError as exc:  # replaced by a link (ELOOP), removed (ENOENT), unreadable, ...
        raise _unreadable_or_changed(rel, exc) from None
    with os.fdopen(fd, "rb", buffering=0) as src:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or (before.st_dev, before.st_ino) != (
            st.st_dev,
            st.st_ino,
        ):
            raise _changed(rel, f" (it became {_kind(before.st_mode)})")
        h = hashlib.sha256()
        copied = 0
        with open(dest, "xb") as out:
            while block := src.read(1 << 20):
                copied += len(block)
                if copied > b.bytes:
                    raise Rejected(
                        f"the submission is larger than {MAX_SUBMISSION_BYTES // 2**20} MiB"
                    )
                h.update(block)
                out.write(block)
                b.check_time()
        after = os.fstat(fd)
        if not _same(before, after) or copied != before.st_size:
            raise _changed(rel)
    b.bytes -= copied
    b.newest_ctime = max(b.newest_ctime, after.st_ctime)
    b.hashes[rel] = h.hexdigest()


def copy_submission(src_fd: int, dest: Path, seconds: float = SUBMISSION_SECONDS) -> _Budget:
    """Copy the folder open as ``src_fd`` to ``dest`` (which must not exist), as described in the
    module docstring; raise :class:`Rejected` with the reason the owner sees.

    Iterative (a stack of open folders), so a deep tree costs no recursion; every folder is
    opened relative to its parent's descriptor with ``O_NOFOLLOW``, so a folder swapped for a
    link mid-copy fails to open instead of leading elsewhere."""
    b = _Budget(seconds=seconds, deadline=time.monotonic() + seconds)
    top = os.dup(src_fd)
    stack: list[tuple[int, Path, str, int]] = [(top, dest, "", 0)]
    try:
        while stack:
            fd, out_dir, rel_dir, depth = stack.pop()
            try:
                before = os.fstat(fd)
                out_dir.mkdir()
                try:
                    entries = os.scandir(fd)
                except OSError as exc:
                    raise _unreadable_or_changed(rel_dir.rstrip("/"), exc) from None
                with entries:
                    for entry in entries:
                        b.check_time()
                        rel = rel_dir + entry.name
                        why = name_problem(entry.name)
                        if why:
                            raise Rejected(f"'{shown(rel)}' {why}; rename it and submit again")
                        if len(rel.encode()) > MAX_PATH_BYTES:
                            raise Rejected(
                                f"'{shown(rel)}' has a path longer than {MAX_PATH_BYTES} bytes"
                            )
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError as exc:  # removed since it was listed, or unreadable
                            raise _unreadable_or_changed(rel, exc) from None
                        b.newest_ctime = max(b.newest_ctime, st.st_ctime)
                        if stat.S_ISDIR(st.st_mode):
                            if depth + 1 > MAX_DEPTH:
                                raise Rejected(
                                    f"the submission has folders nested deeper than {MAX_DEPTH} "
                                    f"levels ('{shown(rel)}')"
                                )
                            b.folders -= 1
                            if b.folders < 0:
                                raise Rejected(
                                    f"the submission has more than {MAX_SUBMISSION_FOLDERS} folders"
                                )
                            try:
                                child = os.open(entry.name, _OPEN_DIR, dir_fd=fd)
                            except OSError as exc:
                                raise _unreadable_or_changed(rel, exc) from None
                            stack.append((child, out_dir / entry.name, rel + "/", depth + 1))
                            cst = os.fstat(child)
                            if (cst.st_dev, cst.st_ino) != (st.st_dev, st.st_ino):
                                raise _changed(rel)
                        elif stat.S_ISREG(st.st_mode):
                            b.files -= 1
                            if b.files < 0:
                                raise Rejected(
                                    f"the submission has more than {MAX_SUBMISSION_FILES} files"
                                )
                            _copy_file(fd, entry.name, rel, st, out_dir / entry.name, b)
                        else:
                            raise Rejected(
                                f"'{shown(rel)}' is {_kind(st.st_mode)}; a submission may hold "
                                "only ordinary files and folders"
                            )
                if not _same(before, os.fstat(fd)):  # entries added, removed or renamed
                    raise _changed(rel_dir.rstrip("/"))
                b.newest_ctime = max(b.newest_ctime, before.st_ctime)
            finally:
                os.close(fd)
    finally:
        for fd, *_ in stack:
            os.close(fd)
    return b


def _rmtree(path: Path) -> None:
    """Remove ``path`` and all below it, without recursion and without long paths: the
    subfolders of each folder are first moved up beside it. (shutil.rmtree recurses, and a
    half-made copy left by older versions of this keeper can be thousands of folders deep.)"""
    try:
        parent = os.open(path.parent, _OPEN_DIR)
    except FileNotFoundError:
        return
    try:
        pending, moved = [path.name], 0
        while pending:
            name = pending.pop()
            try:
                fd = os.open(name, _OPEN_DIR, dir_fd=parent)
            except FileNotFoundError:
                continue
            except OSError:  # not a folder
                os.unlink(name, dir_fd=parent)
                continue
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            moved += 1
                            up = f"{path.name}.{moved}.removing"
                            os.rename(entry.name, up, src_dir_fd=fd, dst_dir_fd=parent)
                            pending.append(up)
                        else:
                            os.unlink(entry.name, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=parent)
            except OSError:  # an entry the listing missed: go round again
                pending.append(name)
    finally:
        os.close(parent)


class ExchangeKeeper:
    """One course's trusted exchange process (see the module docstring)."""

    def __init__(
        self,
        layout: StateLayout,
        course: str,
        users: list[str],
        settle: float = 1.0,
        submission_seconds: float = SUBMISSION_SECONDS,
        scan_seconds: float = SCAN_SECONDS,
    ):
        self.layout = layout
        self.course = course
        self.users = users
        self.settle = settle
        self.submission_seconds = submission_seconds
        self.scan_seconds = scan_seconds
        self.db = connect(layout)
        self.inbound = layout.exchange(course) / "inbound"
        self.staging = layout.exchange(course) / STAGING_DIR
        self._known: set[tuple[str, str]] = set()
        self._errors: dict[tuple[str, str], int] = {}
        self._problems: dict[str, str] = {}  # user -> why their drop is not scanned
        self._start = 0  # where the next scan starts in ``users`` (turns after a spent budget)
        self._load_known()
        self.clean_stale()

    # -- state ------------------------------------------------------------------------------

    def _load_known(self) -> None:
        for owner, name in self.db.execute(
            "SELECT owner, name FROM receipts WHERE course=? "
            "UNION SELECT owner, name FROM rejections WHERE course=?",
            (self.course, self.course),
        ):
            self._known.add((owner, name))

    def clean_stale(self) -> list[str]:
        """Remove half-made copies a killed keeper left behind (run at start)."""
        self.staging.mkdir(parents=True, exist_ok=True)
        if self.inbound.is_dir():  # older versions staged inside inbound: move out of sight
            for p in self.inbound.iterdir():
                if p.name.startswith(".receiving-"):
                    os.rename(p, self.staging / f"legacy-{os.urandom(8).hex()}")
        stale = sorted(p.name for p in self.staging.iterdir())
        for name in stale:
            log.warning("removing a half-received copy left behind: %s", shown(name))
            _rmtree(self.staging / name)
        return stale

    def known(self, owner: str, name: str) -> bool:
        """Whether the keeper has decided on ``name`` in ``owner``'s drop."""
        return (owner, shown(name, 10_000)) in self._known

    def _record(self, r: Receipt, client_ts=None, secret=None, notebooks=()) -> None:
        if r.status == "received":
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
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO rejections VALUES (?,?,?,?,?,?)",
                (r.course, r.owner, r.name, r.lab, r.received_at, r.message),
            )
        self.db.commit()
        self._known.add((r.owner, r.name))

    def _reject(self, user: str, name: str, lab: str | None, why: str) -> Receipt:
        r = Receipt(self.course, shown(name, 10_000), user, lab, now_timestamp(), "rejected", why)
        self._record(r)
        return r

    # -- scanning ---------------------------------------------------------------------------

    def scan(self) -> list[Receipt]:
        """Receive every complete new submission in every drop; return the new receipts.

        Each drop is handled in its own error boundary; when the scan's time is spent, the next
        scan starts with the drop that was not reached."""
        out: list[Receipt] = []
        if not self.users:
            return out
        budget_end = time.monotonic() + self.scan_seconds
        n = len(self.users)
        order = [self.users[(self._start + i) % n] for i in range(n)]
        for i, user in enumerate(order):
            if i and time.monotonic() > budget_end:  # the first drop always gets its turn
                self._start = (self._start + i) % n
                log.warning("scan time spent; the next scan starts with %s's drop", user)
                break
            try:
                got = self._scan_drop(user, budget_end)
            except Exception:
                log.exception("the drop of %s could not be scanned; the others go on", user)
                continue
            if got:
                out += got
                self._write_status(user)
        return out

    def _scan_drop(self, user: str, budget_end: float) -> list[Receipt]:
        drop = self.layout.drop(self.course, user)
        try:
            drop_fd = os.open(drop, _OPEN_DIR)
        except FileNotFoundError:
            return []
        try:
            names = []
            with os.scandir(drop_fd) as entries:
                for entry in entries:
                    if len(names) >= MAX_DROP_ENTRIES:
                        self._set_problem(
                            user,
                            f"your submission folder holds more than {MAX_DROP_ENTRIES} entries, "
                            "so nothing in it is received; delete what you do not need there",
                        )
                        return []
                    names.append(entry.name)
            self._set_problem(user, None)
            out: list[Receipt] = []
            for i, name in enumerate(sorted(n for n in names if not self.known(user, n))):
                if len(out) >= PER_USER_PER_SCAN or (i and time.monotonic() > budget_end):
                    break
                r = self._receive_guarded(drop_fd, user, name)
                if r is not None:
                    out.append(r)
            return out
        finally:
            os.close(drop_fd)

    def _receive_guarded(self, drop_fd: int, user: str, name: str) -> Receipt | None:
        """:meth:`_receive` in its own error boundary: an unexpected error is logged and tried
        again next scan; after :data:`SERVER_ERROR_TRIES` the submission is rejected."""
        try:
            r = self._receive(drop_fd, user, name)
        except Exception as exc:
            key = (user, name)
            self._errors[key] = self._errors.get(key, 0) + 1
            log.exception(
                "error receiving %s from %s (try %d)", shown(name), user, self._errors[key]
            )
            if self._errors[key] < SERVER_ERROR_TRIES:
                return None
            self._errors.pop(key, None)
            return self._reject(
                user,
                name,
                None,
                f"could not be received because of an error on the server "
                f"({type(exc).__name__}); submit again, and tell your instructor if it repeats",
            )
        self._errors.pop((user, name), None)
        if r is not None:
            log.info(
                "%s: %s from %s at %s%s",
                r.status,
                shown(r.name),
                r.owner,
                r.received_at,
                f" ({r.message})" if r.message else "",
            )
        return r

    def _ready(self, fd: int) -> bool:
        """nbgrader writes timestamp.txt last: wait until it is there and no entry of the
        submission folder changed for ``settle`` seconds (inode change times: the trainee
        cannot set them back)."""
        dir_st = os.fstat(fd)
        newest = dir_st.st_ctime
        found = False
        try:
            entries = os.scandir(fd)
        except PermissionError:
            return True  # the copy rejects it, saying why
        with entries:
            for count, entry in enumerate(entries):
                if count >= MAX_SUBMISSION_FILES + MAX_SUBMISSION_FOLDERS:
                    return True  # over the limits anyway: the copy rejects it at once
                found |= entry.name == "timestamp.txt"
                try:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_ctime)
                except FileNotFoundError:  # removed since it was listed: still moving
                    return False
        return found and time.time() - newest >= self.settle

    def _receive(self, drop_fd: int, user: str, name: str) -> Receipt | None:
        m = NAME_RE.match(name)
        if name_problem(name) or not m:
            return self._reject(
                user,
                name,
                None,
                f"'{shown(name)}' is not an nbgrader submission folder name "
                "(<you>+<lab>+<time>); submit with nbgrader",
            )
        if m["owner"] != user:
            return self._reject(
                user, name, m["lab"], f"submitted in the name of '{m['owner']}', not in yours"
            )
        lab = m["lab"]
        st = os.stat(name, dir_fd=drop_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            return self._reject(user, name, lab, f"is {_kind(st.st_mode)}, not a folder")
        try:
            fd = os.open(name, _OPEN_DIR, dir_fd=drop_fd)
        except OSError as exc:  # swapped for a link or removed since the stat, or unreadable
            return self._reject(user, name, lab, str(_unreadable_or_changed("", exc)))
        tmp: Path | None = None
        try:
            if not self._ready(fd):
                return None
            self.staging.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.staging))
            copy = tmp / "copy"
            try:
                got = copy_submission(fd, copy, self.submission_seconds)
            except Rejected as exc:
                return self._reject(user, name, lab, str(exc))
            received_at = format_time(min(got.newest_ctime, time.time()))
            client_ts = _read_small(copy / "timestamp.txt", 100)
            secret = _read_small(copy / "submission_secret.txt", 200)
            (copy / "timestamp.txt").write_text(received_at)
            receipt_doc = {
                "owner": user,
                "lab": lab,
                "received_at": received_at,
                "client_timestamp": client_ts,
                "sha256": got.hashes,
            }
            (copy / "medai_receipt.json").write_text(json.dumps(receipt_doc, indent=1))
            notebooks = [Path(p).stem for p in got.hashes if p.endswith(".ipynb") and "/" not in p]
            target = self.inbound / name
            if target.exists():  # our own copy from a run killed before it wrote the receipt
                os.rename(target, tmp / "old")  # removed with tmp, out of the formgrader's sight
            os.replace(copy, target)
            r = Receipt(self.course, name, user, lab, received_at, "received")
            self._record(r, client_ts, secret, notebooks)
            return r
        finally:
            os.close(fd)
            if tmp is not None:
                _rmtree(tmp)

    # -- what the trainee sees --------------------------------------------------------------

    def _set_problem(self, user: str, problem: str | None) -> None:
        if self._problems.get(user) == problem:
            return
        if problem is None:
            self._problems.pop(user, None)
        else:
            self._problems[user] = problem
            log.warning("drop of %s not scanned: %s", user, problem)
        self._write_status(user)

    def status_rows(self, user: str, limit: int = 200) -> list[dict]:
        """The newest ``limit`` submissions of ``user`` the keeper has decided on, newest
        first."""
        rows = [
            {"name": n, "lab": lab, "status": s, "time": t, "reason": msg or ""}
            for n, lab, s, t, msg in self.db.execute(
                "SELECT name, lab, status, received_at, message FROM receipts "
                "WHERE course=? AND owner=? "
                "UNION ALL SELECT name, lab, 'rejected', rejected_at, message FROM rejections "
                "WHERE course=? AND owner=? ORDER BY 4 DESC LIMIT ?",
                (self.course, user, self.course, user, limit),
            )
        ]
        return rows

    def _write_status(self, user: str) -> None:
        """Write ``receipts.txt``/``.json`` into the user's feedback folder (read-only for them)."""
        rows = self.status_rows(user)
        problem = self._problems.get(user)
        lines = [
            f"Your submissions to {self.course}, as the server received them (newest first).",
            "A rejected submission did not reach your instructor: fix the reason and submit again.",
            "",
        ]
        if problem:
            lines += [f"PROBLEM: {problem}", ""]
        for r in rows:
            lines.append(f"{r['time']}  {r['status'].upper():<8}  {r['lab'] or '-'}  {r['name']}")
            if r["reason"]:
                lines.append(f"    reason: {r['reason']}")
        d = self.layout.user_feedback(self.course, user)
        d.mkdir(parents=True, exist_ok=True)
        doc = {"course": self.course, "owner": user, "problem": problem, "submissions": rows}
        _write_atomic(d / STATUS_JSON, json.dumps(doc, indent=1, ensure_ascii=False))
        _write_atomic(d / STATUS_TXT, "\n".join(lines) + "\n")

    # -- feedback ---------------------------------------------------------------------------

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
            if owner is None:
                continue
            try:
                st = f.lstat()
                if not stat.S_ISREG(st.st_mode):
                    continue
                dest = self.layout.user_feedback(self.course, owner) / f.name
                if dest.exists() and dest.stat().st_mtime >= st.st_mtime:
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_suffix(".tmp")
                shutil.copyfile(f, tmp, follow_symlinks=False)
                os.replace(tmp, dest)
                copied += 1
            except OSError:
                log.exception("feedback %s could not be delivered to %s", f.name, owner)
        return copied

    def run(self, interval: float = 1.0, once: bool = False) -> None:
        """Scan and deliver feedback every ``interval`` seconds; an error in one round is
        logged and the next round runs (the keeper never exits over a drop's content)."""
        while True:
            try:
                self.scan()
                n = self.distribute_feedback()
                if n:
                    log.info("delivered %d feedback file(s)", n)
            except Exception:
                log.exception("exchange round failed; trying again in %.1f s", interval)
            if once:
                return
            time.sleep(interval)


def _read_small(path: Path, limit: int) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Trusted exchange keeper for one course.")
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--course", required=True)
    ap.add_argument("--users", required=True, help="comma-separated user names")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--once", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="[medai-exchange %(levelname)s] %(message)s"
    )
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
