"""The helm chart (``helm/``), rendered offline WITH the Zero to JupyterHub 4.4.0 dependency.

Each render goes through Helm's own engine (helm-python-sdk) with the vendored z2jh archive in
the chart's ``charts/``; every object is validated by kubernetes-validate (strict: unknown
fields fail) against two Kubernetes releases; the assertions read the full render, z2jh's
objects included, and the values z2jh's hub reads (its ``hub`` Secret). Secrets are pinned so
renders are reproducible.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from medai.config import load_config
from medai.hub import roles
from medai.hub.hubconfig import Ports, build_hub_settings
from medai.hub.layout import StateLayout
from medai.isolation.bwrap import Software
from medai.k8s import chart
from medai.k8s.values import GPU_RESOURCE, helm_values, profile_limits

REPO = Path(__file__).resolve().parent.parent
Z2JH = Path(
    os.environ.get(
        "MEDAI_Z2JH_CHART", REPO.parent / "shared/vendor/helm-charts/jupyterhub-4.4.0.tgz"
    )
)
DEMO = REPO / "courses" / "demo-course.yaml"
HUBTEST = REPO / "tests" / "data" / "hub-course.yaml"
PINNED = {
    "hub": {"cookieSecret": "1" * 64, "config": {"CryptKeeper": {"keys": ["2" * 64]}}},
    "proxy": {"secretToken": "3" * 64},
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="module", autouse=True)
def _dependency() -> None:
    assert Z2JH.is_file(), (
        f"the vendored z2jh chart is missing at {Z2JH}; set MEDAI_Z2JH_CHART to a copy of "
        "jupyterhub-4.4.0.tgz (see shared/vendor/README.md)"
    )
    chart.add_dependency(Z2JH)


def course_values(path: Path | None, **kw) -> dict:
    values = helm_values(load_config(path), **kw) if path else {}
    pinned = copy.deepcopy(PINNED)
    for i, name in enumerate(values.get("jupyterhub", {}).get("hub", {}).get("services", {})):
        pinned["hub"].setdefault("services", {})[name] = {"apiToken": str(4 + i) * 64}
    return merge(values, {"jupyterhub": pinned})


COMBOS = {
    "demo-public-host": lambda: course_values(DEMO, public_host="hub.example.org"),
    "hubtest": lambda: course_values(HUBTEST),
    "hub-only": lambda: course_values(None),
    # what .github/workflows/k8s.yaml installs on k3s
    "ci": lambda: merge(
        course_values(DEMO), yaml.safe_load((REPO / "helm/ci/values-ci.yaml").read_text())
    ),
    "services-only": lambda: merge(course_values(HUBTEST), {"jupyterhub": {"enabled": False}}),
    "data-sandbox": lambda: merge(
        course_values(DEMO),
        {
            "medai": {
                "dataSandbox": {
                    "enabled": True,
                    "image": {"name": "x", "tag": "1"},
                    "command": ["python", "-m", "medai.sandbox"],
                }
            }
        },
    ),
}


@functools.cache
def _render(combo: str) -> tuple:
    return tuple(chart.render(COMBOS[combo]()))


def rendered(combo: str) -> list[dict]:
    return copy.deepcopy(list(_render(combo)))


def find(objects: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def hub_values(objects: list[dict]) -> dict:
    """The values z2jh's hub reads at start (its jupyterhub_config.py), from the hub Secret."""
    secret = find(objects, "Secret", "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def pod_specs(objects: list[dict]):
    for o in objects:
        if o["kind"] in POD_KINDS:
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


# ---------------------------------------------------------------------------------- the render


def test_render_includes_the_z2jh_dependency() -> None:
    objects = rendered("demo-public-host")
    from_z2jh = {
        o["kind"] + "/" + o["metadata"]["name"]
        for o in objects
        if "/charts/jupyterhub/" in o["_template"]
    }
    assert {"Deployment/hub", "Deployment/proxy", "NetworkPolicy/singleuser"} <= from_z2jh
    ours = {
        o["kind"] + "/" + o["metadata"]["name"]
        for o in objects
        if o["_template"].startswith("medai/templates/")
    }
    assert {
        "Deployment/medai-grading",
        "Deployment/medai-formgrader",
        "NetworkPolicy/medai-grading-jobs",
        "PersistentVolumeClaim/medai-state",
    } <= ours


def test_render_refuses_without_the_dependency(tmp_path: Path) -> None:
    # Helm itself renders an umbrella without its missing subchart, silently.
    copy_dir = tmp_path / "helm"
    shutil.copytree(chart.CHART_DIR, copy_dir, ignore=shutil.ignore_patterns("charts"))
    with pytest.raises(chart.ChartError, match=r"not in charts/.*helm dependency build"):
        chart.render(COMBOS["hub-only"](), chart_dir=copy_dir)


def test_renders_are_reproducible() -> None:
    assert chart.render(COMBOS["hubtest"]()) == chart.render(COMBOS["hubtest"]())


@pytest.mark.parametrize("version", chart.K8S_VERSIONS)
@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_object_is_valid_kubernetes(combo: str, version: str) -> None:
    objects = rendered(combo)
    assert objects
    assert chart.validate(objects, version) == []


def test_validation_catches_an_unknown_field() -> None:
    bad = rendered("hubtest")
    dep = find(bad, "Deployment", "medai-grading")
    dep["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    assert any("securityContex" in p for p in chart.validate(bad, chart.K8S_VERSIONS[-1]))


def test_services_only_renders_no_hub() -> None:
    objects = rendered("services-only")
    assert not [o for o in objects if "/charts/jupyterhub/" in o["_template"]]
    find(objects, "Deployment", "medai-grading")


def test_values_are_checked_by_our_schema() -> None:
    bad = merge(COMBOS["hubtest"](), {"medai": {"grading": {"wrokers": 2}}})
    with pytest.raises(chart.ChartError, match="wrokers"):
        chart.render(bad)


# -------------------------------------------------------------------------------- pod security


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_no_pod_is_privileged(combo: str) -> None:
    for obj, spec in pod_specs(rendered(combo)):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext", {})
            assert not sc.get("privileged"), f"{where}/{c['name']}"
            assert not sc.get("capabilities", {}).get("add"), f"{where}/{c['name']}"


def test_our_pods_run_restricted() -> None:
    for obj, spec in pod_specs(rendered("data-sandbox")):
        if not obj["_template"].startswith("medai/templates/"):
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"]["drop"] == ["ALL"]


def test_user_pods_are_non_root_without_the_privileged_metadata_blocker() -> None:
    su = hub_values(rendered("demo-public-host"))["singleuser"]
    assert su["uid"] == 1000 and su["allowPrivilegeEscalation"] is False
    # z2jh's default would add a privileged iptables init container to every user pod
    assert su["cloudMetadata"]["blockWithIptables"] is False
    for p in su["profileList"]:
        assert "uid" not in p["kubespawner_override"]


def test_the_z2jh_default_would_add_a_privileged_init_container() -> None:
    # The test above can fail: with z2jh's own default the hub is told to add it.
    over = merge(
        COMBOS["hubtest"](),
        {"jupyterhub": {"singleuser": {"cloudMetadata": {"blockWithIptables": True}}}},
    )
    assert hub_values(chart.render(over))["singleuser"]["cloudMetadata"]["blockWithIptables"]


# ------------------------------------------------------------------------------------ network


def _egress_is_restricted(policy: dict) -> bool:
    spec = policy["spec"]
    if "Egress" not in spec.get("policyTypes", []):
        return False
    for rule in spec.get("egress", []):
        if not rule.get("to"):
            return False  # "to anywhere"
        for peer in rule["to"]:
            cidr = peer.get("ipBlock", {}).get("cidr")
            if cidr in ("0.0.0.0/0", "::/0"):  # the internet, whatever the exceptions
                return False
    return True


def test_trainee_pods_have_no_internet_egress() -> None:
    objects = rendered("demo-public-host")
    policy = find(objects, "NetworkPolicy", "singleuser")
    assert policy["spec"]["podSelector"]["matchLabels"]["component"] == "singleuser-server"
    assert _egress_is_restricted(policy)
    peers = [p for r in policy["spec"]["egress"] for p in r["to"]]
    assert not [p for p in peers if "ipBlock" in p], peers  # no address block at all
    # what it may reach: the hub, DNS in kube-system, pods marked for trainees
    labels = [p.get("podSelector", {}).get("matchLabels", {}) for p in peers]
    assert {"app": "jupyterhub", "component": "hub", "release": "medai"} in labels
    assert {"medai.io/trainee-access": "true"} in labels
    ns = [p["namespaceSelector"]["matchLabels"] for p in peers if "namespaceSelector" in p]
    assert ns == [{"kubernetes.io/metadata.name": "kube-system"}]


def test_z2jh_default_egress_would_fail_the_check() -> None:
    over = merge(
        COMBOS["hubtest"](),
        {
            "jupyterhub": {
                "singleuser": {"networkPolicy": {"egressAllowRules": {"nonPrivateIPs": True}}}
            }
        },
    )
    assert not _egress_is_restricted(find(chart.render(over), "NetworkPolicy", "singleuser"))


def test_course_services_and_grading_jobs_have_policies() -> None:
    objects = rendered("demo-public-host")
    jobs = find(objects, "NetworkPolicy", "medai-grading-jobs")
    assert jobs["spec"]["podSelector"] == {"matchLabels": {"medai.io/component": "grading-job"}}
    assert jobs["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in jobs["spec"] and "egress" not in jobs["spec"]  # deny all
    for name in ("medai-grading", "medai-formgrader", "hub", "proxy"):
        assert "Egress" in find(objects, "NetworkPolicy", name)["spec"]["policyTypes"]
    assert _egress_is_restricted(find(objects, "NetworkPolicy", "medai-formgrader"))
    # trainee pods may not reach the grading service or the formgrader directly
    for name in ("medai-grading", "medai-formgrader"):
        labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert "medai.io/trainee-access" not in labels


def test_staff_content_on_its_own_origin() -> None:
    hv = hub_values(rendered("demo-public-host"))
    assert hv["hub"]["config"]["JupyterHub"]["subdomain_host"] == "https://hub.example.org"
    fg = find(rendered("demo-public-host"), "Deployment", "medai-formgrader")
    cmd = fg["spec"]["template"]["spec"]["containers"][0]["command"]
    assert (
        "--MedaiFormgraderGuard.grading_page="
        "https://medai-grading--service.hub.example.org/services/medai-grading/"
    ) in cmd


# ------------------------------------------------------------------------------------ storage


def _mounts(hv: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in hv["singleuser"]["storage"]["extraVolumeMounts"]}


def test_datasets_are_read_only_and_exchange_is_per_trainee() -> None:
    hv = hub_values(rendered("hubtest"))
    mounts = _mounts(hv)
    assert mounts["/data"]["readOnly"] is True and mounts["/data"]["subPath"] == "data/public"
    ex = "/srv/medai/exchange/hubtest"
    assert mounts[f"{ex}/outbound"]["readOnly"] is True
    assert mounts[f"{ex}/feedback"]["readOnly"] is True
    assert mounts[f"{ex}/feedback"]["subPath"] == "userfeedback/hubtest/{unescaped_username}"
    # the only writable part of the shared volume: the trainee's own drop folder
    writable = [m for m in mounts.values() if m["name"] == "medai-state" and not m.get("readOnly")]
    assert [m["subPath"] for m in writable] == ["drop/hubtest/{unescaped_username}"]
    # nothing else of the state tree (hidden data, receipts, the course folder) is mounted
    subs = {m.get("subPath") for m in mounts.values() if m["name"] == "medai-state"}
    assert not [s for s in subs if s.startswith(("data/hidden", "receipts", "courses", "hub"))]
    assert hv["singleuser"]["storage"]["type"] == "dynamic"  # a home volume per trainee
    shm = {v["name"]: v for v in hv["singleuser"]["storage"]["extraVolumes"]}["dshm"]
    assert shm["emptyDir"]["medium"] == "Memory"


def test_formgrader_sees_no_hidden_data() -> None:
    fg = find(rendered("hubtest"), "Deployment", "medai-formgrader")
    subs = [
        m.get("subPath", "")
        for m in fg["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["name"] == "state"
    ]
    assert "data/public" in subs and not [s for s in subs if "hidden" in s or s == ""]


# ----------------------------------------------------------------------------------- profiles


def _run_profile_filter(hv: dict, groups: list[str]) -> list[str]:
    """Run the generated hub.extraConfig as z2jh's jupyterhub_config.py runs it."""

    class Spawners:
        profile_list = hv["singleuser"]["profileList"]

    class Config:
        KubeSpawner = Spawners

    class Group:
        def __init__(self, name: str) -> None:
            self.name = name

    class User:
        pass

    class Spawner:
        user = User()

    Spawner.user.groups = [Group(g) for g in groups]
    ns = {"c": Config}
    for _, code in sorted(hv["hub"]["extraConfig"].items()):
        exec(compile(code, "hub.extraConfig", "exec"), ns)  # noqa: S102 - our generated code
    return [p["slug"] for p in Spawners.profile_list(Spawner)]


def test_profiles_offered_by_group_match_the_embedded_hub(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text())
    data["profiles"][1]["groups"] = ["instructors", "tas"]  # GPU for staff only
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "c.yaml")
    objects = chart.render(merge(helm_values(cfg), {"jupyterhub": PINNED}))  # tokens: random
    hv = hub_values(objects)
    groups = hv["hub"]["config"]["JupyterHub"]["load_groups"]
    for user in cfg.people.everyone:
        mine = [g for g, body in groups.items() if user in body["users"]]
        assert _run_profile_filter(hv, mine) == [p.name for p in roles.profiles_for(cfg, user)]
    assert _run_profile_filter(hv, [roles.student_group(cfg.course.id)]) == ["cpu"]
    assert _run_profile_filter(hv, []) == []


def test_gpu_limits_only_in_gpu_profiles() -> None:
    cfg = load_config(DEMO)
    hv = hub_values(rendered("demo-public-host"))
    by_slug = {p["slug"]: p["kubespawner_override"] for p in hv["singleuser"]["profileList"]}
    for p in cfg.profiles:
        o = by_slug[p.name]
        lim = profile_limits(p).k8s_resources()["limits"]
        assert o["mem_limit"] + "i" == lim["memory"]
        if p.gpus:
            assert o["extra_resource_limits"] == {GPU_RESOURCE: str(p.gpus)}
            assert o["node_selector"] and any(t["key"] == GPU_RESOURCE for t in o["tolerations"])
        else:
            assert "extra_resource_limits" not in o and "node_selector" not in o
    assert GPU_RESOURCE not in json.dumps(hv["singleuser"].get("extraResource", {}))
    assert {p.gpus > 0 for p in cfg.profiles} == {True, False}  # the demo has both kinds


# -------------------------------------------------------------------------------------- roles


def embedded_settings(cfg, tmp_path: Path) -> dict:
    ports = Ports(public=8000, hub=8081, proxy_api=8001, formgrader=9000, grading=9001)
    return build_hub_settings(
        cfg,
        StateLayout(tmp_path),
        ip="127.0.0.1",
        ports=ports,
        proxy_command=["configurable-http-proxy"],
        software=Software.detect(),
    )


@pytest.mark.parametrize("course", [DEMO, HUBTEST], ids=["demo", "hubtest"])
def test_roles_and_groups_identical_to_the_embedded_hub(course: Path, tmp_path: Path) -> None:
    cfg = load_config(course)
    objects = chart.render(course_values(course))
    hv = hub_values(objects)
    k8s_roles = [{"name": n, **body} for n, body in hv["hub"]["loadRoles"].items()]
    embedded = embedded_settings(cfg, tmp_path)["JupyterHub"]
    by_name = {r["name"]: r for r in embedded["load_roles"]}
    for role in k8s_roles:
        assert by_name[role["name"]] == role
    left_out = set(by_name) - {r["name"] for r in k8s_roles}
    # only the roles of services the cluster runs differently: the culler (z2jh's own, below)
    assert left_out == {roles.CULLER_SERVICE}
    assert hv["hub"]["config"]["JupyterHub"]["load_groups"] == embedded["load_groups"]
    assert sorted(hv["hub"]["services"]) == sorted(
        s["name"] for s in embedded["services"] if "url" in s and s["name"] != "medai-class"
    )
    # z2jh's culler role, read from its own jupyterhub_config.py in the hub ConfigMap
    z2jh_config = find(objects, "ConfigMap", "hub")["data"]["jupyterhub_config.py"]
    block = re.search(r'"name": "jupyterhub-idle-culler",\s*"scopes": \[(.*?)\]', z2jh_config, re.S)
    assert re.findall(r'^\s*"([^"]+)"', block.group(1), re.M) == roles.culler_scopes()


# ------------------------------------------------------------------------------------ defaults


def test_defaults_for_a_class_start() -> None:
    hv = hub_values(rendered("demo-public-host"))
    cfg = load_config(DEMO)
    assert hv["cull"]["enabled"] and hv["cull"]["timeout"] == cfg.servers.idle_server_minutes * 60
    assert hv["cull"]["maxAge"] > 0
    assert hv["singleuser"]["startTimeout"] == cfg.servers.start_timeout_minutes * 60
    assert hv["hub"]["concurrentSpawnLimit"] >= 10
    assert hv["prePuller"]["hook"]["enabled"] and hv["prePuller"]["continuous"]["enabled"]
    assert hv["scheduling"]["userPlaceholder"]["enabled"]
    assert (
        find(rendered("demo-public-host"), "StatefulSet", "user-placeholder")["spec"]["replicas"]
        == hv["scheduling"]["userPlaceholder"]["replicas"]
    )
    assert hv["hub"]["config"]["JupyterHub"]["authenticator_class"] != "dummy"


def test_data_sandbox_placeholder_is_off_by_default() -> None:
    names = {o["metadata"]["name"] for o in rendered("demo-public-host")}
    assert "medai-data-sandbox" not in names
    dep = find(rendered("data-sandbox"), "Deployment", "medai-data-sandbox")
    assert dep["spec"]["template"]["metadata"]["labels"]["medai.io/trainee-access"] == "true"


# ------------------------------------------------------------------------------- schema, docs


def test_schema_json_and_reference_are_generated_from_the_yaml() -> None:
    assert chart.SCHEMA_JSON.read_text() == chart.compiled_schema(), "run `medai helm schema`"
    assert chart.REFERENCE.read_text() == chart.values_reference(), "run `medai helm schema`"


def test_every_default_value_is_in_the_schema() -> None:
    schema = json.loads(chart.SCHEMA_JSON.read_text())
    defaults = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())["medai"]

    def walk(values: dict, node: dict, path: str) -> None:
        for k, v in values.items():
            assert k in node.get("properties", {}), f"medai.{path}{k} is not in the schema"
            sub = node["properties"][k]
            assert sub.get("description"), f"medai.{path}{k} has no description"
            if isinstance(v, dict) and sub.get("properties"):
                walk(v, sub, f"{path}{k}.")

    walk(defaults, schema["properties"]["medai"], "")


# -------------------------------------------------------------------------------- the command


def test_cli_writes_the_values_helm_installs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medai.cli import app

    out = tmp_path / "course-values.yaml"
    res = CliRunner().invoke(app, ["helm", "values", str(HUBTEST), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(out.read_text()) == helm_values(load_config(HUBTEST))
    code = yaml.safe_load(out.read_text())["jupyterhub"]["hub"]["extraConfig"]
    assert "\n" in next(iter(code.values()))  # the profile filter stays readable Python


def test_cli_errors_name_the_problem(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medai.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("course: {id: Bad Id, title: x}\npeople: {instructors: [a]}\n")
    res = CliRunner().invoke(app, ["helm", "values", str(bad)])
    assert res.exit_code == 1 and "bad.yaml" in res.output and "course.id" in res.output
    res = CliRunner().invoke(app, ["helm", "values", str(HUBTEST), "--public-host", "a b"])
    assert res.exit_code == 2 and "--public-host" in res.output
    res = CliRunner().invoke(app, ["helm", "values", str(HUBTEST), "--hub-admin", "teacher"])
    assert res.exit_code == 2 and "teacher" in res.output and "course member" in res.output


def test_hub_admin_is_an_operator_account_outside_the_course() -> None:
    values = helm_values(load_config(HUBTEST), hub_admins=("ops",))
    auth = values["jupyterhub"]["hub"]["config"]["Authenticator"]
    assert auth["admin_users"] == ["ops"] and "ops" in auth["allowed_users"]
    assert (
        helm_values(load_config(HUBTEST))["jupyterhub"]["hub"]["config"]["Authenticator"][
            "admin_users"
        ]
        == []
    )


def test_cli_schema_check_fails_on_drift(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from medai.cli import app

    assert CliRunner().invoke(app, ["helm", "schema", "--check"]).exit_code == 0
    stale = tmp_path / "helm-values.md"
    stale.write_text(chart.values_reference().replace("Placeholder", "Stand-in"))
    monkeypatch.setattr(chart, "REFERENCE", stale)
    res = CliRunner().invoke(app, ["helm", "schema", "--check"])
    assert res.exit_code == 1 and "medai helm schema" in res.output


def test_formgrader_runs_with_the_embedded_hubs_arguments(tmp_path: Path) -> None:
    """Same server extensions, sanitising and Autograde guard as on one machine; only the
    grading service's address differs (a cluster Service instead of a loopback port)."""
    cfg = load_config(HUBTEST)
    embedded = next(
        s
        for s in embedded_settings(cfg, tmp_path)["JupyterHub"]["services"]
        if s["name"] == cfg.course.id
    )["command"]
    fg = find(rendered("hubtest"), "Deployment", "medai-formgrader")
    cmd = fg["spec"]["template"]["spec"]["containers"][0]["command"]
    server_args = embedded[[i for i, a in enumerate(embedded) if a.endswith("singleuser")][-1] :]
    options = [a for a in server_args[1:] if "127.0.0.1" not in a and "grading_page" not in a]
    assert options and set(options) <= set(cmd)
    assert (
        "--MedaiFormgraderGuard.grading_api=http://medai-grading:8080/services/medai-grading/api"
        in cmd
    )
