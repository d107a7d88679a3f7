"""The sandbox's append-only audit log: one JSON line per event, each chained to the one before.

Every line holds ``seq``, ``time``, ``prev`` (the SHA-256 of the previous line's bytes; 64 zeros
for the first), the event and its fields (who, which dataset, the submitted code, the decision,
what was released). Changing, removing or reordering any line breaks the chain from there on;
:func:`verify` (``medai sandbox verify-log``) recomputes it and names the first bad line.
Appending holds an exclusive lock, so concurrent writers cannot interleave.

A hash chain shows tampering by anyone who cannot also rewrite every later line; the owner can
note the last hash (``verify`` prints it) somewhere else to pin the whole history.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

GENESIS = "0" * 64


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: str, **fields) -> dict:
        """Append one event; returns the entry written."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            prev, seq = GENESIS, 0
            last = b""
            for line in fh:
                if line.strip():
                    last = line.rstrip(b"\n")
                    seq += 1
            if last:
                prev = _digest(last)
            entry = {"seq": seq, "time": round(time.time(), 3), "prev": prev, "event": event}
            entry.update(fields)
            data = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()
            fh.write(data + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_bytes().splitlines() if x.strip()]


def verify(path: Path) -> tuple[bool, str]:
    """``(ok, message)``: the message names the first bad line, or gives the last hash."""
    path = Path(path)
    if not path.exists():
        return False, f"{path}: no audit log"
    prev, n = GENESIS, 0
    for i, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            return False, f"{path}:{i}: entry {n} is not JSON (the log was edited)"
        if not isinstance(entry, dict) or entry.get("seq") != n:
            return (
                False,
                f"{path}:{i}: entry {n} is out of order or missing (seq {entry.get('seq') if isinstance(entry, dict) else '?'})",
            )
        if entry.get("prev") != prev:
            return False, (
                f"{path}:{i}: entry {n} does not follow the entry before it "
                "(that entry or this one was changed, removed or inserted)"
            )
        prev = _digest(line)
        n += 1
    return True, f"{path}: {n} entries, chain intact; last hash {prev}"
