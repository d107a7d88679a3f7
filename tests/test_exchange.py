"""The trusted exchange keeper, attacked through a trainee's drop folder."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from medai.hub.exchange import MAX_SUBMISSION_BYTES, ExchangeKeeper
from medai.hub.layout import StateLayout

CLIENT_TIME = "2020-01-01 00:00:00.000000 UTC"


@pytest.fixture
def keeper(tmp_path):
    layout = StateLayout(tmp_path)
    for d in layout.all_dirs("c1", ["alice", "bob"]):
        d.mkdir(parents=True, exist_ok=True)
    return ExchangeKeeper(layout, "c1", ["alice", "bob"], settle=0.0)


def submit(keeper, user, name, files=None, secret="s3cret"):
    d = keeper.layout.drop("c1", user) / name
    d.mkdir(parents=True)
    for rel, text in (files or {"lab.ipynb": "{}"}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    (d / "submission_secret.txt").write_text(secret)
    (d / "timestamp.txt").write_text(CLIENT_TIME)
    past = time.time() - 5
    for p in [d, *d.rglob("*")]:
        os.utime(p, (past, past), follow_symlinks=False)
    return d


def inbound(keeper):
    return keeper.layout.exchange("c1") / "inbound"


def test_receives_with_server_time_and_keeps_the_claim(keeper):
    submit(keeper, "alice", f"alice+lab+{CLIENT_TIME}+r1")
    [r] = keeper.scan()
    assert r.status == "received"
    got = inbound(keeper) / f"alice+lab+{CLIENT_TIME}+r1"
    assert (got / "lab.ipynb").read_text() == "{}"
    assert (got / "timestamp.txt").read_text() == r.received_at
    assert not r.received_at.startswith("2020")
    assert "2020-01-01" in (got / "medai_receipt.json").read_text()


def test_submission_in_someone_elses_name_is_rejected(keeper):
    submit(keeper, "alice", f"bob+lab+{CLIENT_TIME}+r1")
    [r] = keeper.scan()
    assert r.status == "rejected" and "in the name of 'bob'" in r.message
    assert list(inbound(keeper).iterdir()) == []


def test_symlink_to_host_file_is_refused_not_followed(keeper, tmp_path):
    secret = tmp_path / "hub-secret.txt"
    secret.write_text("TOP-SECRET")
    d = submit(keeper, "alice", f"alice+lab+{CLIENT_TIME}+r1")
    (d / "leak.txt").symlink_to(secret)
    [r] = keeper.scan()
    assert r.status == "rejected" and "symbolic link" in r.message
    assert not any("TOP-SECRET" in p.read_text() for p in inbound(keeper).rglob("*") if p.is_file())


def test_oversized_submission_is_rejected_and_nothing_partial_remains(keeper):
    d = submit(keeper, "alice", f"alice+lab+{CLIENT_TIME}+r1")
    with open(d / "big.bin", "wb") as fh:
        fh.truncate(MAX_SUBMISSION_BYTES + 1)
    os.utime(d / "big.bin", (time.time() - 5,) * 2)
    [r] = keeper.scan()
    assert r.status == "rejected" and "larger than" in r.message
    assert list(inbound(keeper).iterdir()) == []


def test_incomplete_submission_waits(keeper):
    d = keeper.layout.drop("c1", "alice") / f"alice+lab+{CLIENT_TIME}+r1"
    d.mkdir()
    (d / "lab.ipynb").write_text("{}")  # nbgrader writes timestamp.txt last
    assert keeper.scan() == []
    (d / "timestamp.txt").write_text(CLIENT_TIME)
    past = time.time() - 5
    for p in [d, *d.iterdir()]:
        os.utime(p, (past, past))
    assert [r.status for r in keeper.scan()] == ["received"]


def test_later_edits_in_the_drop_change_nothing(keeper):
    d = submit(keeper, "alice", f"alice+lab+{CLIENT_TIME}+r1")
    keeper.scan()
    (d / "lab.ipynb").write_text('{"changed": true}')
    assert keeper.scan() == []
    assert (inbound(keeper) / d.name / "lab.ipynb").read_text() == "{}"


def test_feedback_goes_to_its_owner_only(keeper):
    submit(keeper, "alice", f"alice+lab+{CLIENT_TIME}+r1", secret="alice-secret")
    submit(keeper, "bob", f"bob+lab+{CLIENT_TIME}+r2", secret="bob-secret")
    keeper.scan()
    fb = keeper.layout.exchange("c1") / "feedback"
    for who, secret in (("alice", "alice-secret"), ("bob", "bob-secret")):
        h = hashlib.md5((secret + "lab").encode()).hexdigest()
        (fb / f"{h}.html").write_text(f"feedback for {who}")
    (fb / "deadbeef.html").write_text("nobody's")
    assert keeper.distribute_feedback() == 2
    for who in ("alice", "bob"):
        files = list(keeper.layout.user_feedback("c1", who).iterdir())
        assert [f.read_text() for f in files] == [f"feedback for {who}"]
    assert keeper.distribute_feedback() == 0  # idempotent
