"""The trusted exchange keeper, attacked through a trainee's drop folder.

alice is the attacker; bob is an honest trainee whose submission lands in the same scan. Every
hostile drop must be rejected with a reason alice can read in her feedback folder, leave nothing
behind in the trusted inbound or the staging folder, and cost bob nothing: his submission is
received, with the server's time of when it appeared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medai.hub.exchange import (
    MAX_DEPTH,
    MAX_PATH_BYTES,
    MAX_SUBMISSION_BYTES,
    MAX_SUBMISSION_FILES,
    MAX_SUBMISSION_FOLDERS,
    STAGING_DIR,
    STATUS_JSON,
    STATUS_TXT,
    TIMESTAMP_FORMAT,
    ExchangeKeeper,
)
from medai.hub.layout import SANDBOX_EXCHANGE, StateLayout
from medai.hub.spawner import prepare_user
from medai.isolation import bwrap, profiles
from medai.isolation.bwrap import Software
from medai.isolation.limits import Limits

CLIENT_TIME = "2020-01-01 00:00:00.000000 UTC"
ALICE = f"alice+lab+{CLIENT_TIME}+r1"
BOB = f"bob+lab+{CLIENT_TIME}+r1"
SECRET_TEXT = "TOP-SECRET-host-file"


def make_layout(root: Path) -> StateLayout:
    layout = StateLayout(root)
    for d in layout.all_dirs("c1", ["alice", "bob"]):
        d.mkdir(parents=True, exist_ok=True)
    return layout


@pytest.fixture
def keeper(tmp_path):
    return ExchangeKeeper(make_layout(tmp_path), "c1", ["alice", "bob"], settle=0.0)


def submit(layout, user, name, files=None, secret="s3cret", finish=True):
    d = layout.drop("c1", user) / name
    d.mkdir(parents=True)
    for rel, text in (files or {"lab.ipynb": "{}"}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    if finish:
        finish_submission(d, secret)
    return d


def finish_submission(d: Path, secret: str = "s3cret") -> None:
    """What nbgrader writes last: timestamp.txt (the trainee's clock), then the secret."""
    (d / "timestamp.txt").write_text(CLIENT_TIME)
    (d / "submission_secret.txt").write_text(secret)


def inbound(layout):
    return layout.exchange("c1") / "inbound"


def staging(layout):
    return layout.exchange("c1") / STAGING_DIR


def status(layout, user):
    return json.loads((layout.user_feedback("c1", user) / STATUS_JSON).read_text())


def parse_time(stamp: str) -> float:
    return dt.datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC).timestamp()


def nest(root: Path, depth: int, name: str = "d") -> None:
    """A chain of ``depth`` folders below ``root``, made through folder descriptors (the
    paths get longer than the kernel's PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


def remove_deep(path: Path) -> None:
    """Remove a tree too deep for shutil.rmtree (recursive) and pytest's tmp_path clean-up."""
    subprocess.run(["rm", "-rf", "--", str(path)], check=True)


# --- what an honest submission gets ------------------------------------------------------------


def test_receives_with_server_time_and_keeps_the_claim(keeper):
    submit(keeper.layout, "alice", ALICE)
    [r] = keeper.scan()
    assert r.status == "received"
    got = inbound(keeper.layout) / ALICE
    assert (got / "lab.ipynb").read_text() == "{}"
    assert (got / "timestamp.txt").read_text() == r.received_at
    assert abs(parse_time(r.received_at) - time.time()) < 5
    assert "2020-01-01" in (got / "medai_receipt.json").read_text()
    assert status(keeper.layout, "alice")["submissions"][0]["status"] == "received"


def test_backdating_the_files_does_not_backdate_the_receipt(keeper):
    """mtime is the trainee's to set (touch -d); the server uses inode change times."""
    d = submit(keeper.layout, "alice", ALICE, {"lab.ipynb": "{}", "sub/answer.txt": "42"})
    past = time.time() - 86400
    for p in [d, *d.rglob("*")]:
        os.utime(p, (past, past))
    [r] = keeper.scan()
    assert r.status == "received"
    assert abs(parse_time(r.received_at) - time.time()) < 5


def test_submission_in_someone_elses_name_is_rejected(keeper):
    submit(keeper.layout, "alice", BOB)
    [r] = keeper.scan()
    assert r.status == "rejected" and "in the name of 'bob'" in r.message
    assert list(inbound(keeper.layout).iterdir()) == []
    # ... and it does not shadow bob's own submission of the same name
    submit(keeper.layout, "bob", BOB)
    [r] = keeper.scan()
    assert r.status == "received" and r.owner == "bob"
    assert keeper.scan() == []


def test_incomplete_submission_waits(keeper):
    d = submit(keeper.layout, "alice", ALICE, finish=False)  # nbgrader writes timestamp.txt last
    assert keeper.scan() == []
    finish_submission(d)
    assert [r.status for r in keeper.scan()] == ["received"]


def test_a_submission_still_being_written_waits_for_it_to_settle(tmp_path):
    keeper = ExchangeKeeper(make_layout(tmp_path), "c1", ["alice"], settle=1.0)
    submit(keeper.layout, "alice", ALICE)
    assert keeper.scan() == []
    time.sleep(1.1)
    assert [r.status for r in keeper.scan()] == ["received"]


def test_later_edits_in_the_drop_change_nothing(keeper):
    d = submit(keeper.layout, "alice", ALICE)
    keeper.scan()
    (d / "lab.ipynb").write_text('{"changed": true}')
    assert keeper.scan() == []
    assert (inbound(keeper.layout) / d.name / "lab.ipynb").read_text() == "{}"


def test_feedback_goes_to_its_owner_only(keeper):
    submit(keeper.layout, "alice", ALICE, secret="alice-secret")
    submit(keeper.layout, "bob", f"bob+lab+{CLIENT_TIME}+r2", secret="bob-secret")
    keeper.scan()
    fb = keeper.layout.exchange("c1") / "feedback"
    for who, secret in (("alice", "alice-secret"), ("bob", "bob-secret")):
        h = hashlib.md5((secret + "lab").encode()).hexdigest()
        (fb / f"{h}.html").write_text(f"feedback for {who}")
    (fb / "deadbeef.html").write_text("nobody's")
    assert keeper.distribute_feedback() == 2
    for who in ("alice", "bob"):
        files = list(keeper.layout.user_feedback("c1", who).glob("*.html"))
        assert [f.read_text() for f in files] == [f"feedback for {who}"]
    assert keeper.distribute_feedback() == 0  # idempotent


# --- hostile drops: each rejected with its reason; bob, in the same scan, is received ----------


def _deep(d, tmp_path):
    nest(d, 1500)  # today's recursive copy died of RecursionError here, in a restart loop


def _many_files(d, tmp_path):
    (d / "many").mkdir()
    for i in range(MAX_SUBMISSION_FILES + 1):
        (d / "many" / f"{i}.txt").write_text("x")


def _many_folders(d, tmp_path):
    for i in range(MAX_SUBMISSION_FOLDERS + 1):
        (d / f"f{i}").mkdir()


def _huge_file(d, tmp_path):
    with open(d / "huge.bin", "wb") as fh:
        fh.truncate(2**40)  # 1 TiB, sparse: refused from its size, without reading


def _many_medium_files(d, tmp_path):
    for i in range(3):
        with open(d / f"part{i}.bin", "wb") as fh:
            fh.truncate(MAX_SUBMISSION_BYTES // 2)


def _fifo(d, tmp_path):
    os.mkfifo(d / "pipe.ipynb")  # opening it for reading would block until a writer comes


def _socket(d, tmp_path):
    cwd = os.getcwd()
    os.chdir(d)  # AF_UNIX paths are limited to 108 bytes: bind by a relative name
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind("sock")
        s.close()
    finally:
        os.chdir(cwd)


def _device(d, tmp_path):
    os.mknod(d / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))


def _symlink(d, tmp_path):
    (d / "leak.txt").symlink_to(tmp_path / "host-secret.txt")


def _symlinked_folder(d, tmp_path):
    (d / "sub").symlink_to(tmp_path, target_is_directory=True)


def _hardlink(d, tmp_path):
    os.link(tmp_path / "host-secret.txt", d / "leak.txt")


def _newline_name(d, tmp_path):
    (d / "evil\nname.ipynb").write_text("{}")


def _non_utf8_name(d, tmp_path):
    fd = os.open(os.fsencode(d) + b"/\xff\xfe.ipynb", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)


def _dots_name(d, tmp_path):
    (d / "...").write_text("x")


def _long_path(d, tmp_path):
    p = d
    for _ in range(MAX_PATH_BYTES // 250 + 1):
        p = p / ("n" * 250)
        p.mkdir()


HOSTILE = {
    "deep tree": (_deep, f"nested deeper than {MAX_DEPTH} levels"),
    "many files": (_many_files, f"more than {MAX_SUBMISSION_FILES} files"),
    "many folders": (_many_folders, f"more than {MAX_SUBMISSION_FOLDERS} folders"),
    "huge file": (_huge_file, "larger than 50 MiB"),
    "many medium files": (_many_medium_files, "larger than 50 MiB"),
    "fifo": (_fifo, "'pipe.ipynb' is a named pipe (FIFO)"),
    "socket": (_socket, "'sock' is a socket"),
    "device": (_device, "'null' is a character device"),
    "symlink": (_symlink, "'leak.txt' is a symbolic link"),
    "symlinked folder": (_symlinked_folder, "'sub' is a symbolic link"),
    "hard link": (_hardlink, "'leak.txt' is a hard link"),
    "newline in a name": (_newline_name, "'evil\\nname.ipynb' has a control character"),
    "non-UTF-8 name": (_non_utf8_name, "'\\xff\\xfe.ipynb' has a name that is not valid UTF-8"),
    "dots-only name": (_dots_name, "'...' has a name made of dots and spaces only"),
    "long path": (_long_path, f"has a path longer than {MAX_PATH_BYTES} bytes"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_submission_is_rejected_with_its_reason_and_bob_is_received(keeper, tmp_path, kind):
    make, reason = HOSTILE[kind]
    layout = keeper.layout
    (tmp_path / "host-secret.txt").write_text(SECRET_TEXT)
    d = submit(layout, "alice", ALICE, finish=False)
    make(d, tmp_path)
    finish_submission(d)
    submit(layout, "bob", BOB)
    try:
        t0 = time.monotonic()
        receipts = {r.owner: r for r in keeper.scan()}
        took = time.monotonic() - t0
        assert receipts["alice"].status == "rejected", receipts["alice"]
        assert reason in receipts["alice"].message
        assert receipts["bob"].status == "received"
        assert took < 5, f"the scan took {took:.1f} s"
        # nothing of alice's reached the trusted side, nothing is left half-copied
        assert sorted(p.name for p in inbound(layout).iterdir()) == [BOB]
        assert list(staging(layout).iterdir()) == []
        # alice can read why, in her (read-only) feedback folder
        [row] = status(layout, "alice")["submissions"]
        assert row["status"] == "rejected" and reason in row["reason"]
        text = (layout.user_feedback("c1", "alice") / STATUS_TXT).read_text()
        assert "REJECTED" in text and reason in text
        assert keeper.scan() == []  # decided once
    finally:
        if kind == "deep tree":
            remove_deep(d)


def test_a_submission_folder_with_an_odd_name_is_rejected(keeper):
    (keeper.layout.drop("c1", "alice") / f"{ALICE}\nx").mkdir()
    (keeper.layout.drop("c1", "alice") / "notes.txt").write_text("not a submission")
    submit(keeper.layout, "bob", BOB)
    got = sorted((r.owner, r.status, r.message) for r in keeper.scan())
    assert [g[:2] for g in got] == [
        ("alice", "rejected"),
        ("alice", "rejected"),
        ("bob", "received"),
    ]
    assert "is not an nbgrader submission folder name" in got[0][2] + got[1][2]
    assert [r["name"] for r in status(keeper.layout, "alice")["submissions"]].count(
        f"{ALICE}\\nx"
    ) == 1


def test_a_symlink_in_place_of_the_submission_folder_is_rejected(keeper, tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "timestamp.txt").write_text(SECRET_TEXT)
    (keeper.layout.drop("c1", "alice") / ALICE).symlink_to(tmp_path / "outside")
    [r] = keeper.scan()
    assert r.status == "rejected" and "is a symbolic link, not a folder" in r.message


def test_a_drop_with_too_many_entries_is_not_scanned_and_says_why(keeper):
    from medai.hub.exchange import MAX_DROP_ENTRIES

    drop = keeper.layout.drop("c1", "alice")
    for i in range(MAX_DROP_ENTRIES + 1):
        (drop / f"junk{i}").mkdir()
    submit(keeper.layout, "bob", BOB)
    assert [(r.owner, r.status) for r in keeper.scan()] == [("bob", "received")]
    assert "more than 1000 entries" in status(keeper.layout, "alice")["problem"]


def test_an_unreadable_file_is_rejected_by_a_keeper_that_is_not_root(tmp_path):
    """As root the keeper reads anything; run it without capabilities (as it runs on a hub
    that is not started by root) and let alice hide a file from it with chmod 000."""
    layout = make_layout(tmp_path)
    d = submit(layout, "alice", ALICE, finish=False)
    (d / "secret.ipynb").write_text("{}")
    (d / "secret.ipynb").chmod(0)
    finish_submission(d)
    submit(layout, "bob", BOB)
    res = subprocess.run(
        ["bwrap", "--unshare-user", "--uid", "1000", "--cap-drop", "ALL", "--dev-bind", "/", "/"]
        + [sys.executable, "-m", "medai.hub.exchange", "--state", str(tmp_path)]
        + ["--course", "c1", "--users", "alice,bob", "--settle", "0", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    [row] = status(layout, "alice")["submissions"]
    assert "'secret.ipynb' cannot be read by the server" in row["reason"]
    assert [p.name for p in inbound(layout).iterdir()] == [BOB]


# --- races: the drop changes under the keeper's hands ------------------------------------------

WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
while True:  # rewrite the same bytes: the size stays, the content and times change
    os.pwrite(fd, b"changed", 4096)
"""

SWAPPER = """
import os, sys
os.chdir(sys.argv[1])
while True:
    os.rename("sub", "sub.real")
    os.symlink(sys.argv[2], "sub")
    os.unlink("sub")
    os.rename("sub.real", "sub")
"""


def _race(keeper, tmp_path, script, make):
    """alice's submission is mutated by a separate process while the keeper copies it."""
    layout = keeper.layout
    (tmp_path / "host-secret.txt").write_text(SECRET_TEXT)
    d = submit(layout, "alice", ALICE, finish=False)
    target = make(d)
    finish_submission(d)
    submit(layout, "bob", BOB)
    proc = subprocess.Popen([sys.executable, "-c", script, *target])
    try:
        time.sleep(0.3)  # let it run
        receipts = {r.owner: r for r in keeper.scan()}
    finally:
        proc.kill()
        proc.wait()
    assert receipts["bob"].status == "received"
    assert receipts["alice"].status == "rejected", receipts["alice"]
    assert sorted(p.name for p in inbound(layout).iterdir()) == [BOB]
    assert list(staging(layout).iterdir()) == []
    return receipts["alice"].message


def test_a_file_that_changes_while_it_is_copied_is_rejected(keeper, tmp_path):
    def make(d):
        (d / "data").mkdir()  # below the top level, so the submission looks settled
        with open(d / "data" / "grow.bin", "wb") as fh:
            fh.truncate(20 * 2**20)
        return [str(d / "data" / "grow.bin")]

    why = _race(keeper, tmp_path, WRITER, make)
    assert "'data/grow.bin' changed while it was being received" in why


def test_a_folder_swapped_for_a_link_mid_copy_is_rejected_and_nothing_leaks(keeper, tmp_path):
    def make(d):
        (d / "x" / "a" / "sub").mkdir(parents=True)
        (d / "x" / "a" / "sub" / "answer.txt").write_text("mine")
        with open(d / "x" / "a" / "big.bin", "wb") as fh:  # keeps the copy of a/ busy a while
            fh.truncate(30 * 2**20)
        return [str(d / "x" / "a"), str(tmp_path)]

    why = _race(keeper, tmp_path, SWAPPER, make)
    assert "changed while it was being received" in why or "symbolic link" in why
    found = [p for p in keeper.layout.root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not any(
        SECRET_TEXT in p.read_text(errors="replace") for p in found if "inbound" in p.parts
    )


# --- time and clean-up -------------------------------------------------------------------------


def test_one_submission_gets_a_bounded_time(tmp_path):
    keeper = ExchangeKeeper(
        make_layout(tmp_path), "c1", ["alice", "bob"], settle=0.0, submission_seconds=0.001
    )
    d = submit(keeper.layout, "alice", ALICE, finish=False)
    with open(d / "big.bin", "wb") as fh:
        fh.truncate(40 * 2**20)
    finish_submission(d)
    receipts = {r.owner: r for r in keeper.scan()}
    assert "took longer than 0.001 s" in receipts["alice"].message
    assert list(staging(keeper.layout).iterdir()) == []


def test_when_a_scan_runs_out_of_time_the_next_one_starts_with_the_drop_it_did_not_reach(
    tmp_path,
):
    keeper = ExchangeKeeper(
        make_layout(tmp_path), "c1", ["alice", "bob"], settle=0.0, scan_seconds=0.0
    )
    submit(keeper.layout, "alice", ALICE)
    submit(keeper.layout, "alice", f"alice+lab+{CLIENT_TIME}+r2")
    submit(keeper.layout, "bob", BOB)
    assert [r.owner for r in keeper.scan()] == ["alice"]
    assert [r.owner for r in keeper.scan()] == ["bob"]
    assert [r.owner for r in keeper.scan()] == ["alice"]


def test_half_made_copies_of_a_killed_keeper_are_removed_at_start(tmp_path):
    layout = make_layout(tmp_path)
    (staging(layout) / "tmpab12" / "copy" / "sub").mkdir(parents=True)
    (staging(layout) / "tmpab12" / "copy" / "sub" / "lab.ipynb").write_text("{}")
    (inbound(layout) / f".receiving-{ALICE}").mkdir()  # where older versions staged,
    nest(inbound(layout) / f".receiving-{ALICE}", 1500)  # as deep as they left it when killed
    (inbound(layout) / BOB).mkdir()  # a finished one stays
    ExchangeKeeper(layout, "c1", ["alice", "bob"])
    assert list(staging(layout).iterdir()) == []
    assert [p.name for p in inbound(layout).iterdir()] == [BOB]


# --- the keeper as the hub runs it: a real process ---------------------------------------------


@pytest.mark.slow
def test_the_keeper_process_survives_hostile_drops_and_bob_is_received_on_time(tmp_path):
    """On the code before this test, the deep tree killed the keeper (RecursionError, exit 1;
    the hub restarted it into the same crash), bob's submission was never received and a
    half-made ``.receiving-*`` copy stayed in the trusted inbound."""
    layout = make_layout(tmp_path)
    (tmp_path / "host-secret.txt").write_text(SECRET_TEXT)
    deep = submit(layout, "alice", ALICE, finish=False)
    nest(deep, 1500)
    finish_submission(deep)
    fifo = submit(layout, "alice", f"alice+lab+{CLIENT_TIME}+r2", finish=False)
    os.mkfifo(fifo / "pipe.ipynb")
    finish_submission(fifo)
    link = submit(layout, "alice", f"alice+lab+{CLIENT_TIME}+r3", finish=False)
    (link / "leak.txt").symlink_to(tmp_path / "host-secret.txt")
    finish_submission(link)
    keeper = subprocess.Popen(
        [sys.executable, "-m", "medai.hub.exchange", "--state", str(tmp_path), "--course", "c1"]
        + ["--users", "alice,bob", "--interval", "0.2", "--settle", "0.3"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # the keeper has met alice's drop
        assert keeper.poll() is None, keeper.communicate()[1][-2000:]
        bob = submit(layout, "bob", BOB, secret="bob-secret")
        appeared = time.time()
        got = inbound(layout) / BOB
        deadline = time.monotonic() + 30
        while not (got / "medai_receipt.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert got.exists(), "bob's submission was not received"
        received = parse_time((got / "timestamp.txt").read_text())
        print(f"bob: received_at - appeared = {received - appeared:+.3f} s")
        assert abs(received - appeared) < 2
        # feedback still flows to bob
        h = hashlib.md5(b"bob-secretlab").hexdigest()
        (layout.exchange("c1") / "feedback" / f"{h}.html").write_text("well done")
        fb = layout.user_feedback("c1", "bob") / f"{h}.html"
        deadline = time.monotonic() + 10
        while not fb.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fb.read_text() == "well done"
        time.sleep(1)  # a few more rounds over alice's drop
        assert keeper.poll() is None, "the keeper died"
    finally:
        keeper.send_signal(signal.SIGINT)
        err = keeper.communicate(timeout=30)[1]
        remove_deep(deep)
    rows = {r["name"]: r for r in status(layout, "alice")["submissions"]}
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"rejected"}
    assert "nested deeper" in rows[ALICE]["reason"]
    assert "named pipe" in rows[f"alice+lab+{CLIENT_TIME}+r2"]["reason"]
    assert "symbolic link" in rows[f"alice+lab+{CLIENT_TIME}+r3"]["reason"]
    assert [p.name for p in inbound(layout).iterdir()] == [BOB]
    assert list(staging(layout).iterdir()) == []
    assert "Traceback" not in err, err[-2000:]
    assert bob.exists()


# --- what alice sees, from inside her own sandbox ----------------------------------------------


def test_alice_attacks_from_her_sandbox_and_reads_the_reasons_there(tmp_path):
    """The hostile drop is made by alice's code in her real bubblewrap sandbox (uid 1000 in a
    user namespace, her drop at nbgrader's inbound path); she reads the keeper's verdict at
    the read-only feedback path of that sandbox and cannot change it."""
    layout = make_layout(tmp_path)
    for user in ("alice", "bob"):
        prepare_user(layout, user, ["c1"])
    keeper = ExchangeKeeper(layout, "c1", ["alice", "bob"], settle=0.0)
    limits = Limits.server(memory_mb=1024, cpus=None)
    argv = bwrap.argv(
        profiles.trainee_server(layout, "alice", ["c1"], Software.detect(), limits), "bwrap"
    )
    base = f"{SANDBOX_EXCHANGE}/c1"

    def in_sandbox(code: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*argv, sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = in_sandbox(
        f"""
        import os
        for i, kind in enumerate(["fifo", "deep", "link"]):
            d = "{base}/inbound/alice+lab+{CLIENT_TIME}+" + kind
            os.makedirs(d)
            if kind == "fifo":
                os.mkfifo(d + "/lab.ipynb")
            elif kind == "deep":
                os.makedirs(d + "/d" * 40)
            else:
                os.symlink("/etc/passwd", d + "/lab.ipynb")
            open(d + "/timestamp.txt", "w").write("{CLIENT_TIME}")
        print("made")
        """
    )
    assert made.stdout.strip() == "made", made.stderr
    submit(layout, "bob", BOB)
    receipts = keeper.scan()
    assert sorted((r.owner, r.status) for r in receipts) == [("alice", "rejected")] * 3 + [
        ("bob", "received")
    ]
    seen = in_sandbox(
        f"""
        print(open("{base}/feedback/{STATUS_TXT}").read())
        try:
            open("{base}/feedback/{STATUS_TXT}", "w").write("all received")
        except OSError as exc:
            print("WRITE REFUSED:", exc.strerror)
        """
    )
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout.count("REJECTED") == 3
    assert "is a named pipe (FIFO)" in seen.stdout
    assert "nested deeper than 16 levels" in seen.stdout
    assert "is a symbolic link" in seen.stdout
    assert "WRITE REFUSED: Read-only file system" in seen.stdout
