"""The sandbox section of the course config, the private cohort and its mock twin."""

from __future__ import annotations

import secrets

import pandas as pd
import pytest

from medai.config import ConfigError, parse_config
from medai.sandbox import cohort, registry

BASE = {
    "course": {"id": "c1", "title": "C"},
    "people": {"instructors": ["ann"], "trainees": ["bo"]},
}


def _cfg(sandbox: dict):
    return parse_config({**BASE, "sandbox": sandbox})


def test_defaults_and_registry():
    cfg = _cfg({"datasets": [{"name": "cohort", "title": "Cohort", "owner": "ann"}]})
    (d,) = registry.sandboxed_datasets(cfg)
    assert d.name == "cohort" and d.owner == "ann"
    assert d.mock_path == "sandbox-mock/cohort/mock.csv"
    assert d.policy["min_cell"] == 10 and d.policy["rounding_base"] == 5
    assert "no row-level output" in d.policy_summary
    assert [c["name"] for c in d.schema] == cohort.COLUMNS
    assert "`patient_id`" in d.card and "mock.csv" in d.card
    assert registry.sandboxed_datasets(parse_config(BASE)) == []


@pytest.mark.parametrize(
    "sandbox, key, words",
    [
        (
            {"datasets": [{"name": "c", "title": "C", "owner": "zed"}]},
            "sandbox.datasets[0].owner",
            "not a course user",
        ),
        (
            {"datasets": [{"name": "c", "title": "C", "owner": "bo"}]},
            "sandbox.datasets[0].owner",
            "is a trainee",
        ),
        (
            {"datasets": [{"name": "c", "title": "C", "owner": "ann", "policy": {"min_cell": 0}}]},
            "sandbox.datasets.0.policy.min_cell",
            "greater than or equal",
        ),
        (
            {
                "datasets": [
                    {"name": "c", "title": "C", "owner": "ann", "policy": {"outputs": ["rows"]}}
                ]
            },
            "sandbox.datasets.0.policy.outputs",
            "table",
        ),
    ],
)
def test_bad_sandbox_config_names_key(sandbox, key, words):
    with pytest.raises(ConfigError) as exc:
        _cfg(sandbox)
    keys = [k for k, _ in exc.value.problems]
    assert any(
        k.replace("[", ".").replace("]", "").startswith(key.replace("[", ".").replace("]", ""))
        for k in keys
    ), exc.value.problems
    assert words in str(exc.value)


def test_private_cohort_is_keyed_by_the_secret_and_the_mock_is_public():
    a, b = secrets.token_bytes(32), secrets.token_bytes(32)
    pa, pa2, pb = (cohort.private_cohort(s, 300) for s in (a, a, b))
    pd.testing.assert_frame_equal(pa, pa2)  # same key, same data
    assert not pa["sbp"].equals(pb["sbp"])  # another deployment, other patients
    mock = cohort.mock_cohort(20261202, 300)
    assert list(mock.columns) == list(pa.columns) == cohort.COLUMNS
    assert not set(mock["patient_id"]) & set(pa["patient_id"])
    # canaries are in the private data only, and nowhere in the mock
    for c in cohort.canaries(a):
        row = pa[pa["patient_id"] == c.patient_id]
        assert len(row) == 1 and int(row["sbp"].iloc[0]) == c.sbp
        assert c.marker in row["note"].iloc[0]
        assert c.patient_id not in mock.to_csv() and c.marker not in mock.to_csv()


def test_prepare_writes_private_data_out_of_public_reach(tmp_path):
    cfg = _cfg({"datasets": [{"name": "cohort", "title": "Cohort", "owner": "ann", "n": 100}]})
    lay = registry.SandboxLayout(tmp_path)
    registry.prepare(lay, cfg.sandbox.datasets[0], secrets.token_bytes(32))
    assert (lay.private_file("cohort").stat().st_mode & 0o077) == 0
    assert (lay.root.stat().st_mode & 0o077) == 0
    assert (tmp_path / "data") not in lay.private_file("cohort").parents
    mock = pd.read_csv(lay.mock_dir("cohort") / "mock.csv")
    assert list(mock.columns) == cohort.COLUMNS
    assert (lay.mock_dir("cohort") / "card.md").read_text().startswith("# Cohort")


def test_data_job_profile_binds_only_the_job_and_one_dataset(tmp_path):
    from medai.isolation import bwrap, profiles
    from medai.sandbox.jobs import job_limits

    prof = profiles.data_job(
        tmp_path / "job", tmp_path / "private", bwrap.Software.detect(), job_limits(30), {}
    )
    assert prof.network == "none" and prof.clear_env
    assert [(b.inside, b.writable) for b in prof.binds] == [("/job", False), ("/private", False)]
    argv = bwrap.argv(prof)
    assert "--unshare-all" in argv and "--clearenv" in argv
    assert str(tmp_path / "private") in argv and "/data" not in argv
    assert not any(str(tmp_path.parent) in a and "datasandbox" in a for a in argv)


def test_hub_settings_register_the_service_its_scopes_and_roles(demo_config, tmp_path):
    from medai.hub.hubconfig import Ports, build_hub_settings
    from medai.hub.layout import StateLayout
    from medai.isolation.bwrap import Software

    def build(sandbox_port: int):
        return build_hub_settings(
            demo_config,
            StateLayout(tmp_path),
            ip="127.0.0.1",
            ports=Ports(8000, 8081, 8001, 9000, 9001, 0, sandbox_port),
            proxy_command=["chp"],
            software=Software(paths=("/opt/py",), path_env="/usr/bin"),
        )

    hub = build(9100)
    (svc,) = [s for s in hub["JupyterHub"]["services"] if s["name"] == "medai-sandbox"]
    assert svc["url"] == "http://127.0.0.1:9100"
    assert svc["command"][:3][1:] == ["-m", "medai.sandbox.service"]
    assert set(svc["oauth_client_allowed_scopes"]) == set(hub["JupyterHub"]["custom_scopes"])
    roles = {r["name"]: r for r in hub["JupyterHub"]["load_roles"]}
    assert roles["medai101-sandbox-owners"]["users"] == ["instructor"]
    assert "trainee1" in roles["medai101-sandbox-users"]["users"]
    assert roles["medai101-sandbox-usage"]["users"] == ["instructor"]
    assert roles["medai101-sandbox-service"]["scopes"] == []
    # trainees' servers: their token may call the service, its port is forwarded out
    assert "custom:medai-sandbox:submit" in hub["Spawner"]["server_token_scopes"]
    assert hub["BwrapSpawner"]["sandbox_port"] == 9100
    # without a port (or without sandboxed datasets) nothing of it is there
    off = build(0)
    assert not [s for s in off["JupyterHub"]["services"] if s["name"] == "medai-sandbox"]
    assert "server_token_scopes" not in off["Spawner"]
    assert "custom_scopes" not in off["JupyterHub"]
