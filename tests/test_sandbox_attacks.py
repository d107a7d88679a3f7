"""Attacks on the data sandbox: jobs run for real in the data-job sandbox (bubblewrap), and the
trusted side decides. Each attack must be refused, suppressed or held, and nothing any trainee
reads may carry a canary or a private value."""

from __future__ import annotations

import json
import re
import time

import pytest

from medai.config import parse_config
from medai.sandbox import cohort
from medai.sandbox.service import Sandbox, SandboxError

pytestmark = pytest.mark.slow

PRELUDE = "from medai.sandbox import outputs as out\n"


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    cfg = parse_config(
        {
            "course": {"id": "c1", "title": "C"},
            "people": {"instructors": ["ann"], "trainees": ["bo", "cy"]},
            "sandbox": {
                "timing_quantum_s": 0,
                "datasets": [{"name": "cohort", "title": "Cohort", "owner": "ann", "n": 1000}],
            },
        }
    )
    s = Sandbox(cfg, tmp_path_factory.mktemp("state"), workers=2)
    for user in ("bo", "cy"):
        s.request_access(user, "cohort", "to test the sandbox's defences")
        s.decide_access("ann", user, "cohort", "grant")
    yield s
    s.pool.shutdown(wait=True)


def run(sb: Sandbox, code: str, function: str = "f", user: str = "bo") -> dict:
    job = sb.submit(user, "cohort", PRELUDE + code, function)["job"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        view = sb.job_view(user, job)
        if view["status"] != "running":
            return view
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def secrets_of(sb: Sandbox) -> list[str]:
    """Strings that must never appear in anything a trainee reads."""
    secret = sb.layout.secret.read_text().strip()
    cans = cohort.canaries(bytes.fromhex(secret))
    private = sb.checkers["cohort"].private
    out = [secret]
    for c in cans:
        out += [c.patient_id, c.marker, f"{c.bmi:.2f}"]
    out += list(private["patient_id"].sample(50, random_state=0))
    return out


def assert_clean(sb: Sandbox, *views) -> None:
    text = json.dumps(views)
    for s in secrets_of(sb):
        assert s not in text, f"{s!r} leaked in {text[:300]}"
    assert not re.search(r"P\d{8}", text), text[:300]
    assert "Traceback" not in text


def test_honest_aggregates_are_released_without_review(sb):
    views = [
        run(sb, "def f(df):\n    return out.table(df, by=['region', 'sex'])"),
        run(sb, "def f(df):\n    return out.table(df, by=['smoking'], value='sbp', stat='mean')"),
        run(sb, "def f(df):\n    return out.regression(df, y='sbp', x=['age', 'bmi'])"),
        run(sb, "def f(df):\n    return out.dp_count(df[df.age >= 65], epsilon=0.5)"),
    ]
    assert [v["status"] for v in views] == ["released"] * 4, views
    for cell in views[0]["output"]["cells"]:
        assert cell["value"] is None or cell["value"] % 5 == 0
    assert views[2]["output"]["coef"]["age"] > 0
    assert_clean(sb, *views)


def test_a_safe_model_is_released_and_is_the_services_own_refit(sb):
    code = (
        "from sklearn.linear_model import LogisticRegression\n"
        "def f(df):\n"
        "    tr = df.sample(frac=0.7, random_state=1)\n"
        "    m = LogisticRegression(max_iter=2000).fit(tr[['age', 'sbp']], tr.stroke_5y)\n"
        "    return out.model(tr, y='stroke_5y', x=['age', 'sbp'], coef=m.coef_[0],\n"
        "                     intercept=m.intercept_[0])\n"
    )
    v = run(sb, code, user="cy")
    assert v["status"] == "released", v
    assert v["output"]["checks"]["membership_inference_auc"] < 0.65
    assert_clean(sb, v)


@pytest.mark.parametrize(
    "code, rule",
    [
        # raw rows, a column, a slice
        ("def f(df):\n    return df", "not-an-output"),
        (
            "def f(df):\n    return {'kind': 'table', 'frame': df, 'by': ['patient_id']}",
            "identifier-column",
        ),
        ("def f(df):\n    return out.table(df, by=['note'])", "identifier-column"),
        (
            "def f(df):\n    return out.table(df.head(3), by=['sex'], value='sbp', stat='mean')",
            "threshold",
        ),
        # rebuilt frame with copies of one patient (pass the threshold by duplication)
        (
            "import pandas as pd\ndef f(df):\n    return out.table(pd.concat([df.head(1)] * 20), by=['sex'], value='sbp', stat='mean')",
            "duplicated-rows",
        ),
        # altered values smuggled under a schema name
        (
            "def f(df):\n    d = df.copy(); d['sbp'] = d['sbp'] * 0 + d['sbp'].iloc[0]\n    return out.table(d, by=['sex'], value='sbp', stat='mean')",
            "altered-data",
        ),
        # a derived group label that carries a value computed from the data
        (
            "def f(df):\n    d = df.copy(); d['g'] = str(df.bmi.max())\n    return out.table(d, by=['g'])",
            "group-labels",
        ),
        # a derived code computed from a patient's value, the same for every row: one big
        # group whose label is the secret
        (
            "def f(df):\n    d = df.copy(); d['g'] = int(df.bmi.max()) % 21\n"
            "    return out.table(d, by=['g', 'sex'])",
            "group-labels",
        ),
        # minima and maxima
        (
            "def f(df):\n    return out.table(df, by=['sex'], value='age', stat='max')",
            "no-minima-maxima",
        ),
        # a value encoded in the exception message or in printed output
        (
            "def f(df):\n    print(df.to_string())\n    raise ValueError(df.loc[df.age.idxmax(), 'patient_id'] + str(df.bmi.max()))",
            "error",
        ),
        # a value encoded in the exception's class name
        (
            "def f(df):\n    raise type('E' + df.loc[df.age.idxmax(), 'patient_id'], (Exception,), {})()",
            "error",
        ),
        # the network
        (
            "import socket\ndef f(df):\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return out.table(df, by=['sex'])",
            "error",
        ),
        # writing outside scratch (the private data, the job folder, the root)
        (
            "def f(df):\n    open('/private/data.parquet', 'w').write('x')\n    return out.table(df, by=['sex'])",
            "error",
        ),
        (
            "def f(df):\n    open('/job/x', 'w').write('x')\n    return out.table(df, by=['sex'])",
            "error",
        ),
        # a huge result
        (
            "import os\ndef f(df):\n    os.write(int(os.environ['MEDAI_RESULT_FD']), b'[' * 10**8)\n    return out.table(df, by=['sex'])",
            "output-limit",
        ),
        # a job that never ends
        ("def f(df):\n    while True: pass", "timeout"),
    ],
)
def test_attacks_are_refused_and_leak_nothing(sb, code, rule):
    if rule == "timeout":
        sb.datasets["cohort"] = sb.datasets["cohort"].model_copy(
            update={"policy": sb.datasets["cohort"].policy.model_copy(update={"job_seconds": 3})}
        )
    try:
        v = run(sb, code, user="cy")
    finally:
        sb.datasets["cohort"] = sb.datasets["cohort"].model_copy(
            update={"policy": sb.datasets["cohort"].policy.model_copy(update={"job_seconds": 60})}
        )
    assert v["status"] == "refused", v
    if rule:
        assert v["rule"] == rule, v
    assert "output" not in v
    assert_clean(sb, v)


def test_the_job_sees_no_other_data_and_no_secret(sb):
    code = (
        "import os\n"
        "def f(df):\n"
        "    for p in ['/data', '/srv', '/home', '"
        + str(sb.layout.root)
        + "', '"
        + str(sb.layout.secret.parent)
        + "']:\n"
        "        if os.path.exists(p): raise FileExistsError()\n"
        "    return out.table(df, by=['sex'])\n"
    )
    assert run(sb, code)["status"] == "released"


def test_differencing_two_queries_one_patient_apart_is_refused(sb):
    first = run(
        sb,
        "def f(df):\n    return out.table(df[df.age >= 50], by=['sex'], value='sbp', stat='mean')",
    )
    assert first["status"] == "released", first
    # the same cohort without one patient: its mean times n would give that patient's value
    second = run(
        sb,
        "def f(df):\n    d = df[df.age >= 50]\n    return out.table(d.iloc[1:], by=['sex'], value='sbp', stat='mean')",
    )
    assert second["status"] == "refused" and second["rule"] == "differencing", second
    assert_clean(sb, first, second)


def test_overfitted_or_forged_model_parameters_are_held_not_released(sb):
    # parameters that encode a patient's value instead of the fit
    code = (
        "def f(df):\n"
        "    tr = df.sample(frac=0.7, random_state=2)\n"
        "    return out.model(tr, y='stroke_5y', x=['age', 'bmi'],\n"
        "                     coef=[float(df.bmi.max()), 0.0], intercept=0.0)\n"
    )
    v = run(sb, code, user="cy")
    assert v["status"] == "held" and v["rule"] == "model-not-reproducible", v
    assert "output" not in v
    assert_clean(sb, v)
    (held,) = [j for j in sb.review_queue("ann") if j["id"] == v["job"]]
    assert held["rule"] == "model-not-reproducible"
    with pytest.raises(SandboxError):
        sb.review("bo", v["job"], "approve")  # only the data owner may
    approved = sb.review("ann", v["job"], "refuse")
    assert approved["status"] == "refused"


def test_timing_is_quantised(sb):
    sb.quantum = 2.0
    try:
        t0 = time.monotonic()
        v = run(sb, "def f(df):\n    return out.table(df, by=['sex'])", user="cy")
        took = time.monotonic() - t0
    finally:
        sb.quantum = 0
    assert v["status"] == "released"
    assert took >= 1.9  # visible only at the next whole quantum after submission
    assert "wall" not in json.dumps(v) and "time" not in json.dumps(v)


def test_no_access_no_jobs_and_rate_limit(sb):
    with pytest.raises(SandboxError) as exc:
        sb.submit("ann", "cohort", "def f(df): pass", "f")
    assert exc.value.status == 403 and "request it" in str(exc.value)
    with pytest.raises(SandboxError) as exc:
        sb.submit("bo", "nope", "def f(df): pass", "f")
    assert exc.value.status == 404
    with pytest.raises(SandboxError):
        sb.job_view("cy", sb.submit("bo", "cohort", PRELUDE + "def f(df): pass", "f")["job"])


def test_audit_log_records_everything_and_verifies(sb):
    from medai.sandbox.audit import verify

    events = {e["event"] for e in sb.audit.entries()}
    assert {"access-request", "access-decision", "submit", "decision", "review"} <= events
    ok, msg = verify(sb.layout.audit_log)
    assert ok, msg


@pytest.mark.parametrize(
    "code, status_rule",
    [
        ("import os\ndef f(df):\n    os._exit(3)", "crashed"),
        ("def f(df):\n    return 42", "not-an-output"),  # not an output request
        ("def f(df):\n    return out.table(df, by=['sex'], stat='mode')", "statistic"),
        ("def f(df)\n    pass", "error"),  # a syntax error
        ("import ctypes\ndef f(df):\n    ctypes.string_at(0)", "crashed"),  # a segfault
    ],
)
def test_bad_jobs_get_a_clear_status_and_the_service_keeps_serving(sb, code, status_rule):
    v = run(sb, code, user="cy")
    assert v["status"] == "refused" and v["rule"] == status_rule, v
    assert_clean(sb, v)
    assert run(sb, "def f(df):\n    return out.table(df, by=['smoking'])")["status"] == "released"


def test_malformed_requests_are_refused_with_a_reason(sb):
    for code, fn, words in [
        (None, "f", "code must be text"),
        ("x" * 70_000, "f", "at most"),
        ("def f(df): pass", "not a name", "function must be"),
    ]:
        with pytest.raises(SandboxError) as exc:
            sb.submit("bo", "cohort", code, fn)
        assert exc.value.status == 400 and words in str(exc.value)
    with pytest.raises(SandboxError) as exc:
        sb.request_access("bo", "cohort", "x")
    assert exc.value.status == 400 and "purpose" in str(exc.value)


def test_instructor_sees_usage_and_resets_a_budget(sb):
    v = run(sb, "def f(df):\n    return out.dp_mean(df, 'sbp', 80, 220, epsilon=1.0)", user="cy")
    assert v["status"] == "released" and 80 <= v["output"]["value"] <= 220
    usage = {(u["user"], u["dataset"]): u for u in sb.usage()}
    assert usage[("cy", "cohort")]["epsilon_spent"] >= 1.0
    left = usage[("cy", "cohort")]["epsilon_left"]
    if left < 1.0:  # spent: the next DP query is refused by the budget rule
        assert (
            run(sb, "def f(df):\n    return out.dp_count(df, epsilon=1.5)", user="cy")["rule"]
            == "budget"
        )
    assert sb.reset_budget("ann", "cy", "cohort")["epsilon_left"] == 2.0
    assert "budget-reset" in {e["event"] for e in sb.audit.entries()}


def test_grouping_by_a_column_does_not_reveal_rare_values_in_suppressed_labels(sb):
    # a frequency table of exact BMI values: the canaries' BMIs (two decimals, nobody else's)
    # form cells of one patient; they are suppressed, and their labels must go with them
    v = run(sb, "def f(df):\n    return out.table(df, by=['bmi'])", user="bo")
    assert v["status"] in ("released", "refused"), v
    assert_clean(sb, v)
    code = "def f(df):\n    return out.table(df[df.age >= 62], by=['age'])"
    v = run(sb, code, user="bo")
    assert v["status"] == "released", v
    labels = [c["group"][0] for c in v["output"]["cells"]]
    assert labels and all(x <= 95 for x in labels), labels  # canaries are 97 to 104
