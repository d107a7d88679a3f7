"""Isolation, tested from inside a trainee's running server (their kernel), as an attacker would.

Secrets are planted on the host where the hub keeps them (another trainee's home and submission,
the hub database and cookie secret, the gradebook, the course source with solutions, hidden
data); code in alice's kernel then tries to read them by every path it knows and by scanning
its whole file system, and tries to write where it must not.
"""

from __future__ import annotations

import json
import textwrap
import time

import pytest

pytestmark = pytest.mark.slow

MARK_BOB_HOME = "MARKER-bob-home-7f3a"
MARK_BOB_SUBMISSION = "MARKER-bob-submission-2c91"
MARK_HIDDEN = "MARKER-hidden-labels-5d20"


@pytest.fixture(scope="module")
def planted(running_hub):
    layout = running_hub.layout
    course = running_hub.config.course.id
    (layout.home("bob") / "diary.txt").write_text(MARK_BOB_HOME)
    sub = layout.exchange(course) / "inbound" / "bob+hello+2026-01-01 00:00:00.000000 UTC+abc"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / "hello.ipynb").write_text(MARK_BOB_SUBMISSION)
    (layout.hidden_data / "labels.csv").write_text(MARK_HIDDEN)
    cookie_secret = (layout.hub / "jupyterhub_cookie_secret").read_text().strip()
    return {
        "host_paths": [
            str(layout.home("bob") / "diary.txt"),
            str(sub / "hello.ipynb"),
            str(layout.hidden_data / "labels.csv"),
            str(layout.hub / "jupyterhub.sqlite"),
            str(layout.hub / "jupyterhub_cookie_secret"),
            str(layout.hub / "accounts.json"),
            str(layout.course_dir(course) / "gradebook.db"),
            str(layout.course_dir(course) / "source" / "hello" / "hello.ipynb"),
            str(layout.receipts_db),
            "/home/bob/diary.txt",
            "/etc/shadow",
        ],
        "markers": [MARK_BOB_HOME, MARK_BOB_SUBMISSION, MARK_HIDDEN, cookie_secret],
        "state_root": str(layout.root),
    }


def run_probe(alice, planted) -> dict:
    code = textwrap.dedent(
        f"""
        import json, os
        report = {{"readable": [], "found": [], "writable": [], "env": [], "procs": []}}
        for p in {planted["host_paths"]!r}:
            try:
                with open(p, "rb") as fh:
                    fh.read(16)
                report["readable"].append(p)
            except OSError:
                pass
        # reversed on the wire, so the probe's own source (kept in IPython's history
        # database in alice's home) does not contain the markers it looks for
        markers = [m[::-1].encode() for m in {[m[::-1] for m in planted["markers"]]!r}]
        skip = ("/proc", "/sys", "/dev", "/usr")
        for top in os.listdir("/"):
            root = "/" + top
            if root in skip:
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                if "site-packages" in dirpath or "/lib/python3" in dirpath:
                    dirnames[:] = []
                    continue
                for f in filenames:
                    path = os.path.join(dirpath, f)
                    try:
                        if os.path.islink(path) or os.path.getsize(path) > 5_000_000:
                            continue
                        data = open(path, "rb").read()
                    except OSError:
                        continue
                    for m in markers:
                        if m in data:
                            report["found"].append(path)
        for p in ["/data/x.txt", "/srv/medai/exchange/hubtest/outbound/x.txt",
                  "/srv/medai/exchange/hubtest/feedback/x.txt", "/usr/x.txt",
                  {planted["state_root"] + "/hub/x.txt"!r}, "/opt/medai/etc/jupyter/x.py"]:
            try:
                with open(p, "w") as fh:
                    fh.write("x")
                report["writable"].append(p)
            except OSError:
                pass
        report["env"] = sorted(os.environ)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    report["procs"].append(open(f"/proc/{{pid}}/cmdline", "rb").read().decode(errors="replace"))
                except OSError:
                    pass
        report["listing"] = sorted(os.listdir("/srv/medai/exchange/hubtest/inbound"))
        print(json.dumps(report))
        """
    )
    res = alice.execute(code, timeout=180)
    assert res.error is None, res.error + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probe(alice, planted):
    return run_probe(alice, planted)


def test_cannot_read_other_homes_hub_state_gradebook_or_source(probe):
    assert probe["readable"] == []


def test_no_planted_secret_anywhere_in_the_sandbox(probe):
    assert probe["found"] == []


def test_cannot_write_data_released_labs_or_outside_home(probe):
    assert probe["writable"] == []


def test_environment_holds_no_hub_secrets(probe):
    leaked = [k for k in probe["env"] if k.startswith(("CONFIGPROXY", "JPY_COOKIE", "MEDAI_HUB"))]
    assert leaked == []
    assert "MEDAI_DATA" in probe["env"]


def test_sees_no_hub_or_other_user_processes(probe):
    cmdlines = " ".join(probe["procs"])
    assert "configurable-http-proxy" not in cmdlines
    assert "medai.hub.app" not in cmdlines and "jupyterhub_config" not in cmdlines
    assert len(probe["procs"]) < 20  # its own process tree only


def test_cannot_see_other_submissions(probe):
    assert not any(name.startswith("bob+") for name in probe["listing"])


def test_home_is_writable_and_data_readable(alice):
    res = alice.execute(
        "import os\n"
        "open(os.path.expanduser('~/ok.txt'), 'w').write('ok')\n"
        "print(os.environ['MEDAI_DATA'], os.access(os.environ['MEDAI_DATA'], os.R_OK))"
    )
    assert res.error is None
    assert res.stdout.split() == ["/data", "True"]


def test_forged_and_backdated_submissions_are_handled_by_the_server(alice, running_hub):
    """alice drops a submission in bob's name and a back-dated one of her own."""
    layout = running_hub.layout
    inbound = layout.exchange("hubtest") / "inbound"
    code = textwrap.dedent(
        """
        import os
        base = "/srv/medai/exchange/hubtest/inbound"
        for name in ["bob+hello+2026-01-01 00:00:00.000000 UTC+forged",
                     "alice+hello+2020-01-01 00:00:00.000000 UTC+early"]:
            os.makedirs(os.path.join(base, name))
            open(os.path.join(base, name, "hello.ipynb"), "w").write("{}")
            open(os.path.join(base, name, "timestamp.txt"), "w").write(
                "2020-01-01 00:00:00.000000 UTC")
        print("ok")
        """
    )
    res = alice.execute(code)
    assert res.error is None and res.stdout.strip() == "ok"
    early = inbound / "alice+hello+2020-01-01 00:00:00.000000 UTC+early"
    deadline = time.monotonic() + 30
    while not early.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert early.exists(), "the exchange keeper did not receive alice's submission"
    # Server time, not the client's claim (and the claim is kept for the instructor).
    stamp = (early / "timestamp.txt").read_text()
    assert stamp.startswith(time.strftime("%Y-%m-%d", time.gmtime())), stamp
    receipt = json.loads((early / "medai_receipt.json").read_text())
    assert receipt["client_timestamp"].startswith("2020-01-01")
    assert receipt["owner"] == "alice"
    # The forged one never reaches the trusted inbound.
    assert not (inbound / "bob+hello+2026-01-01 00:00:00.000000 UTC+forged").exists()
