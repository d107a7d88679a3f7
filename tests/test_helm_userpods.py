"""Trainee pods as the hub would create them, from the chart's render.

User pods are not in a helm render: z2jh's hub makes them at spawn time. So this runs the hub's
own configuration path offline: the rendered hub ConfigMap and Secret are written out as the hub
pod mounts them, z2jh's ``jupyterhub_config.py`` (from that ConfigMap, with its config root
moved to a temporary folder) is loaded by traitlets, and the real KubeSpawner 7 builds the pod
for a course member who picked a profile. The pods are validated with kubernetes-validate and
their security asserted. No API server is contacted (the kubeconfig points nowhere).
"""

from __future__ import annotations

import asyncio
import base64
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from medai.config import load_config
from medai.hub import roles
from medai.k8s import chart
from medai.k8s.values import CPU_GUARANTEE_SHARE, GPU_RESOURCE, profile_limits
from tests.test_helm import COMBOS, DEMO, HUBTEST, Z2JH, find, merge

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


class _Named:
    """A hub user or group record as KubeSpawner reads it (names only)."""

    def __init__(self, name: str, **attrs) -> None:
        self.name = name
        self.__dict__.update(attrs)


def hub_config(objects: list[dict], root: Path, monkeypatch: pytest.MonkeyPatch):
    """z2jh's hub configuration, loaded from the rendered ConfigMap and Secret."""
    from traitlets.config.loader import PyFileConfigLoader

    cm = find(objects, "ConfigMap", "hub")["data"]
    secret = find(objects, "Secret", "hub")["data"]
    (root / "config").mkdir(parents=True)
    (root / "secret").mkdir()
    for key, text in cm.items():
        (root / "config" / key).write_text(text)
    for key, b64 in secret.items():
        (root / "secret" / key).write_bytes(base64.b64decode(b64))
    (root / "jupyterhub_config.py").write_text(cm["jupyterhub_config.py"])
    (root / "z2jh.py").write_text(cm["z2jh.py"].replace("/usr/local/etc/jupyterhub", str(root)))
    (root / "kubeconfig").write_text(KUBECONFIG)
    for var, value in {
        "POD_NAMESPACE": "medai",
        "HELM_RELEASE_NAME": "medai",
        "HUB_SERVICE_PORT": "8081",
        "PROXY_API_SERVICE_PORT": "8001",
        "PROXY_PUBLIC_SERVICE_PORT": "80",
        "KUBECONFIG": str(root / "kubeconfig"),
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "z2jh", raising=False)  # its values are memoised
    return PyFileConfigLoader("jupyterhub_config.py", str(root)).load_config()


def user_pod(config, cfg, user: str, profile: str | None) -> dict:
    """The pod KubeSpawner would create for ``user`` choosing ``profile``, as sent to the API."""
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    groups = [_Named(g) for g, body in roles.hub_groups(cfg).items() if user in body["users"]]

    async def build() -> dict:
        who = _Named(user, id=1, url=f"/user/{user}/", groups=groups)
        spawner = KubeSpawner(config=config, user=who, _mock=True)
        spawner.user_options = {"profile": profile} if profile else {}
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as api:
            return api.sanitize_for_serialization(pod)

    # a thread of its own: the session's Playwright browser keeps an event loop running here
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, build()).result()


@pytest.fixture(scope="module")
def demo_pods(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    chart.add_dependency(Z2JH)
    mp = pytest.MonkeyPatch()
    try:
        config = hub_config(
            chart.render(COMBOS["demo-public-host"]()), tmp_path_factory.mktemp("hub"), mp
        )
        cfg = load_config(DEMO)
        return {
            (user, p.name): user_pod(config, cfg, user, p.name)
            for user in ("trainee1", "ta")
            for p in cfg.profiles
        }
    finally:
        mp.undo()


@pytest.mark.parametrize("version", chart.K8S_VERSIONS)
def test_user_pods_are_valid_kubernetes(demo_pods: dict, version: str) -> None:
    assert chart.validate(list(demo_pods.values()), version) == []


def test_user_pods_are_non_root_and_unprivileged(demo_pods: dict) -> None:
    for (user, profile), pod in demo_pods.items():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, (user, profile)
        assert not spec.get("initContainers"), "z2jh's privileged metadata blocker is back"
        assert not [v for v in spec["volumes"] if "hostPath" in v]
        (c,) = spec["containers"]
        sc = c["securityContext"]
        assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True
        assert sc["allowPrivilegeEscalation"] is False and not sc.get("privileged")
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_user_pods_mount_data_read_only_and_only_their_own_drop(demo_pods: dict) -> None:
    for (user, _), pod in demo_pods.items():
        (c,) = pod["spec"]["containers"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/data"]["readOnly"] is True
        ex = "/srv/medai/exchange/medai101"
        assert mounts[f"{ex}/inbound"]["subPath"] == f"drop/medai101/{user}"
        assert mounts[f"{ex}/feedback"]["subPath"] == f"userfeedback/medai101/{user}"
        assert mounts[f"{ex}/feedback"]["readOnly"] and mounts[f"{ex}/outbound"]["readOnly"]
        assert mounts["/home/jovyan"]["name"].startswith("volume-")  # the trainee's own home
        writable = [
            m["subPath"]
            for m in c["volumeMounts"]
            if m["name"] == "medai-state" and not m.get("readOnly")
        ]
        assert writable == [f"drop/medai101/{user}"]
        shm = next(v for v in pod["spec"]["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"]["medium"] == "Memory" and mounts["/dev/shm"]["name"] == "dshm"


def test_gpu_only_in_the_gpu_profile_and_limits_from_the_course(demo_pods: dict) -> None:
    cfg = load_config(DEMO)
    for p in cfg.profiles:
        pod = demo_pods[("trainee1", p.name)]
        res = pod["spec"]["containers"][0]["resources"]
        lim = profile_limits(p)
        assert res["limits"]["memory"] == lim.memory_mb * 2**20
        assert res["limits"]["cpu"] == p.cpu_limit
        assert res["requests"]["memory"] == res["limits"]["memory"]  # memory reserved in full
        assert res["requests"]["cpu"] == p.cpu_limit * CPU_GUARANTEE_SHARE
        if p.gpus:
            assert res["limits"][GPU_RESOURCE] == str(p.gpus)
            assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert GPU_RESOURCE in {t["key"] for t in pod["spec"]["tolerations"]}
        else:
            assert GPU_RESOURCE not in res["limits"] and not pod["spec"].get("nodeSelector")
            assert GPU_RESOURCE not in {t["key"] for t in pod["spec"].get("tolerations", [])}


def test_a_profile_outside_the_users_groups_is_refused(tmp_path: Path, monkeypatch) -> None:
    import yaml

    data = yaml.safe_load(DEMO.read_text())
    data["profiles"][1]["groups"] = ["instructors", "tas"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "c.yaml")
    from medai.k8s.values import helm_values

    values = merge(helm_values(cfg), {"jupyterhub": COMBOS["hub-only"]()["jupyterhub"]})
    config = hub_config(chart.render(values), tmp_path / "hub", monkeypatch)
    assert (
        user_pod(config, cfg, "ta", "gpu")["spec"]["containers"][0]["resources"]["limits"][
            GPU_RESOURCE
        ]
        == "1"
    )
    with pytest.raises(ValueError, match="gpu"):  # KubeSpawner's own check of user_options
        user_pod(config, cfg, "trainee1", "gpu")
    assert (
        GPU_RESOURCE
        not in user_pod(config, cfg, "trainee1", None)["spec"]["containers"][0]["resources"][
            "limits"
        ]
    )


def test_hubtest_course_pods_build(tmp_path: Path, monkeypatch) -> None:
    config = hub_config(chart.render(COMBOS["hubtest"]()), tmp_path, monkeypatch)
    pod = user_pod(config, load_config(HUBTEST), "mallory", None)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == 2**30
    assert chart.validate([pod], chart.K8S_VERSIONS[0]) == []


def test_user_pods_get_the_embedded_sandbox_jupyter_config(demo_pods: dict, tmp_path) -> None:
    import json

    from medai.hub.layout import SANDBOX_JUPYTER_CONFIG, StateLayout
    from medai.hub.spawner import kernel_culling, write_user_jupyter_config

    cfg = load_config(DEMO)
    cull = kernel_culling(int(cfg.servers.idle_kernel_minutes * 60))
    local = write_user_jupyter_config(StateLayout(tmp_path), "jovyan", cull)
    pod = demo_pods[("trainee1", "cpu")]
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # the embedded sandbox's environment: config only from the generated, read-only folder
    assert env["JUPYTER_CONFIG_DIR"] == SANDBOX_JUPYTER_CONFIG
    assert env["MEDAI_DATA"] == "/data" and env["IPYTHONDIR"] == "/home/jovyan/.ipython"
    # mounted from z2jh's `singleuser` Secret (the kubelet mounts secrets read-only)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret = find(chart.render(COMBOS["demo-public-host"]()), "Secret", "singleuser")
    files = {}
    for m in c["volumeMounts"]:
        if m["mountPath"].startswith(SANDBOX_JUPYTER_CONFIG + "/"):
            assert volumes[m["name"]]["secret"]["secretName"] == "singleuser"
            raw = (
                secret.get("stringData", {}).get(m["subPath"])
                or base64.b64decode(secret["data"][m["subPath"]]).decode()
            )
            files[m["mountPath"].removeprefix(SANDBOX_JUPYTER_CONFIG + "/")] = raw
    assert files["nbgrader_config.py"] == (local / "nbgrader_config.py").read_text()
    server = json.loads(files["jupyter_server_config.json"])
    want = json.loads((local / "jupyter_server_config.json").read_text())
    assert server["MappingKernelManager"] == want["MappingKernelManager"]  # idle-kernel culling
    assert (
        server["KernelManager"]
        == want["KernelManager"]
        == {"transport": "ipc", "ip": "/tmp/jupyter-kernel"}
    )
    assert server["LabApp"]["extension_manager"] == "readonly"
    assert (
        server["LabServerApp"]["labextensions_path"][0] == "/usr/local/share/jupyter/labextensions"
    )


def test_names_with_dots_and_underscores_get_their_own_drop(tmp_path: Path, monkeypatch) -> None:
    """KubeSpawner's ``{username}`` is an escaped slug ("a.b_c" would not be the folder the
    exchange keeper watches); the chart uses ``{unescaped_username}``, safe because course
    names cannot hold ``/`` (medai.config.NAME_RE) and only course members may log in."""
    import yaml

    from medai.k8s.values import helm_values

    data = yaml.safe_load(HUBTEST.read_text())
    data["people"]["trainees"] = ["ann.lee_2", "bo-b"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "c.yaml")
    values = merge(helm_values(cfg), {"jupyterhub": COMBOS["hub-only"]()["jupyterhub"]})
    config = hub_config(chart.render(values), tmp_path / "hub", monkeypatch)
    for user in ("ann.lee_2", "bo-b"):
        mounts = user_pod(config, cfg, user, None)["spec"]["containers"][0]["volumeMounts"]
        inbound = [m for m in mounts if m["mountPath"].endswith("/hubtest/inbound")]
        assert [m["subPath"] for m in inbound] == [f"drop/hubtest/{user}"]
