"""The grader's Kubernetes backend (medai.k8s.grading).

Offline: the ConfigMap and Job it would create for a submission are built with the
``kubernetes`` client's models, serialised as the client sends them, validated with
kubernetes-validate (strict) against two Kubernetes releases, and their security asserted; the
chart's deny-all policy must select exactly these pods. The control loop runs only against a
real cluster (marker ``k8s``, when a kubeconfig is present and ``MEDAI_K8S_IMAGE`` names a
grader image the cluster can pull), never against a stand-in.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import nbformat
import pytest

from medai.autograder.sandbox import SandboxJob
from medai.isolation.limits import Limits
from medai.k8s import chart
from medai.k8s.grading import (
    JOB_LABEL,
    KubernetesBackend,
    KubernetesGradingError,
    pack_job,
    parse_output,
    prlimit_argv,
)


def _job(tmp_path: Path, code: str, data: bool = False) -> SandboxJob:
    job = tmp_path / "job"
    (job / "files").mkdir(parents=True)
    (job / "inputs").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, job / "files" / "t.ipynb")
    spec = {"notebooks": ["t.ipynb"], "tasks": {"lab": "t", "tasks": {"v": {"kind": "value"}}}}
    (job / "job.json").write_text(json.dumps(spec))
    data_dir = None
    if data:
        data_dir = tmp_path / "state" / "data" / "public"
        data_dir.mkdir(parents=True)
    return SandboxJob(job, data_dir, Limits(wall_s=20, cpu_s=10), name="alice")


def _backend(tmp_path: Path) -> KubernetesBackend:
    return KubernetesBackend(
        namespace="medai",
        image="ghcr.io/medai-lab/medai-grader:0.1.0",
        state_claim="medai-state",
        state_mount=tmp_path / "state",
    )


def _dicts(backend: KubernetesBackend, job: SandboxJob) -> tuple[dict, dict]:
    from kubernetes.client import ApiClient

    cm, jb = backend.objects(job, "abc123", pack_job(job.job_dir))
    api = ApiClient()
    return api.sanitize_for_serialization(cm), api.sanitize_for_serialization(jb)


@pytest.mark.parametrize("version", chart.K8S_VERSIONS)
def test_job_objects_are_valid_kubernetes(tmp_path: Path, version: str) -> None:
    cm, jb = _dicts(_backend(tmp_path), _job(tmp_path, "x = 1", data=True))
    assert chart.validate([cm, jb], version) == []


def test_grading_pod_is_locked_down(tmp_path: Path) -> None:
    job = _job(tmp_path, "x = 1", data=True)
    _, jb = _dicts(_backend(tmp_path), job)
    pod = jb["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False  # no service addresses in the environment
    assert pod["restartPolicy"] == "Never" and jb["spec"]["backoffLimit"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not [v for v in pod["volumes"] if "hostPath" in v or "secret" in v]
    runner = pod["containers"][0]
    mounts = {m["mountPath"]: m for m in runner["volumeMounts"]}
    assert mounts["/job"]["readOnly"] is True
    assert mounts["/data"]["readOnly"] is True and mounts["/data"]["subPath"] == "data/public"
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"]["readOnly"] is True
    env = {e["name"]: e["value"] for e in runner["env"]}
    assert not [n for n in env if "TOKEN" in n or n.startswith(("JUPYTERHUB", "KUBERNETES"))]
    assert env["MEDAI_RESULT_FD"] == "1" and env["MEDAI_DATA"] == "/data"


def test_limits_are_the_local_sandbox_limits(tmp_path: Path) -> None:
    job = _job(tmp_path, "x = 1")
    job.limits = Limits(
        memory_mb=1500, cpus=2, cpu_s=30, wall_s=40, scratch_mb=128, tmp_mb=32, shm_mb=16
    )
    _, jb = _dicts(_backend(tmp_path), job)
    pod = jb["spec"]["template"]["spec"]
    runner = pod["containers"][0]
    mem = job.limits.cgroup_memory_bytes() // 2**20
    assert runner["resources"]["limits"] == {"memory": f"{mem}Mi", "cpu": "2000m"}
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v}
    assert (sizes["scratch"], sizes["tmp"], sizes["shm"]) == ("128Mi", "32Mi", "16Mi")
    assert runner["command"][: len(prlimit_argv(job.limits))] == prlimit_argv(job.limits)
    assert "--cpu=30" in runner["command"] and f"--as={1500 * 2**20}" in runner["command"]
    assert jb["spec"]["activeDeadlineSeconds"] >= 40


def test_the_charts_deny_all_policy_selects_the_grading_pods(tmp_path: Path) -> None:
    from tests.test_helm import COMBOS, Z2JH, find  # the chart's render, z2jh included

    chart.add_dependency(Z2JH)
    policy = find(chart.render(COMBOS["hubtest"]()), "NetworkPolicy", "medai-grading-jobs")
    _, jb = _dicts(_backend(tmp_path), _job(tmp_path, "x = 1"))
    labels = jb["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector == JOB_LABEL and selector.items() <= labels.items()
    assert "egress" not in policy["spec"] and "ingress" not in policy["spec"]


def test_the_packed_job_holds_only_job_files(tmp_path: Path) -> None:
    job = _job(tmp_path, "x = 1")
    (job.job_dir / "etc").mkdir()  # the bubblewrap backend's identity files: not shipped
    (job.job_dir / "files" / "link").symlink_to("/etc/passwd")
    with tarfile.open(fileobj=io.BytesIO(pack_job(job.job_dir))) as tar:
        names = sorted(m.name for m in tar.getmembers())
        assert all(m.uid == 0 and m.mode in (0o644, 0o755) for m in tar.getmembers())
    assert names == ["files", "files/t.ipynb", "inputs", "job.json"]


def test_data_outside_the_state_volume_is_refused(tmp_path: Path) -> None:
    job = _job(tmp_path, "x = 1")
    job.data_dir = tmp_path / "elsewhere"
    with pytest.raises(KubernetesGradingError, match="not on the state volume"):
        _backend(tmp_path).objects(job, "abc", b"")


def test_oracle_jobs_are_refused_with_the_reason(tmp_path: Path) -> None:
    job = _job(tmp_path, "x = 1")
    job.oracle = lambda req: {}
    with pytest.raises(KubernetesGradingError, match="bubblewrap backend"):
        _backend(tmp_path).run(job)


def test_from_env_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDAI_K8S_NAMESPACE", raising=False)
    monkeypatch.setenv("MEDAI_K8S_IMAGE", "img:1")
    with pytest.raises(KubernetesGradingError, match="MEDAI_K8S_NAMESPACE.*grading.yaml"):
        KubernetesBackend.from_env()


def test_output_is_split_into_records_and_log() -> None:
    text = "\n".join(
        [
            '{"type": "start"}',
            "a warning from a library",
            '{"type": "cell", "ok": tr',
            "[1, 2]",
            '{"type": "done"}',
        ]
    )
    records, malformed, log = parse_output(text)
    assert [r["type"] for r in records] == ["start", "done"]
    assert malformed == 1 and log == "a warning from a library\n[1, 2]"


# ------------------------------------------------------------------------ against a real cluster


def _kubeconfig() -> bool:
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    return Path(path).is_file() and bool(os.environ.get("MEDAI_K8S_IMAGE"))


def _cluster_backend() -> KubernetesBackend:
    return KubernetesBackend(
        namespace=os.environ.get("MEDAI_K8S_NAMESPACE", "medai"),
        image=os.environ["MEDAI_K8S_IMAGE"],
        start_timeout_s=600,
    )


@pytest.mark.k8s
@pytest.mark.skipif(not _kubeconfig(), reason="needs a kubeconfig and MEDAI_K8S_IMAGE")
def test_cluster_grades_a_submission_and_the_pod_has_no_way_out(tmp_path: Path) -> None:
    code = (
        "import os, socket\nfrom medai.autograder.lab import check\n"
        "s = socket.socket(); s.settimeout(3)\n"
        "try:\n    s.connect(('1.1.1.1', 443)); net = 'open'\n"
        "except OSError as e:\n    net = 'blocked'\n"
        "token = os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token')\n"
        "print(net, token, os.getuid())\n"
        "check('v', [1, 2.5])"
    )
    res = _cluster_backend().run(_job(tmp_path, code))
    assert res.status == "ok", res
    cell = next(r for r in res.records if r["type"] == "cell")
    assert cell["stdout"].split() == ["blocked", "False", "1000"], cell
    assert any(r["type"] == "check" for r in res.records)


@pytest.mark.k8s
@pytest.mark.skipif(not _kubeconfig(), reason="needs a kubeconfig and MEDAI_K8S_IMAGE")
def test_cluster_wall_clock_ends_a_stuck_submission(tmp_path: Path) -> None:
    job = _job(tmp_path, "import time\ntime.sleep(1000)")
    job.limits = Limits(wall_s=15, cpu_s=10)
    res = _cluster_backend().run(job)
    assert res.status == "timeout" and res.wall_s < 60


def test_the_grading_service_uses_this_backend_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from medai.hub.grading import _backend_factory

    monkeypatch.setenv("MEDAI_K8S_NAMESPACE", "course-ns")
    monkeypatch.setenv("MEDAI_K8S_IMAGE", "img:1")
    backend = _backend_factory("kubernetes", None)()
    assert isinstance(backend, KubernetesBackend) and backend.namespace == "course-ns"
    assert backend.secure and backend.name == "kubernetes"


@pytest.mark.slow  # nbgrader generates and releases the lab: about a minute on a busy machine
def test_the_init_container_prepares_the_state_as_medai_up_does(tmp_path: Path) -> None:
    """``medai.k8s.prepare`` on the course file the chart's ConfigMap carries (datasets left
    out to keep it quick): folders, gradebook roster, released lab."""
    import yaml

    from medai.config import load_config
    from medai.hub.layout import StateLayout
    from medai.k8s import prepare
    from medai.k8s.values import helm_values

    repo = Path(__file__).resolve().parent
    data = yaml.safe_load((repo / "data" / "hub-course.yaml").read_text())
    data["datasets"] = []
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    course_file = helm_values(load_config(tmp_path / "c.yaml"))["medai"]["courseFile"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "course.yaml").write_text(course_file)
    state = tmp_path / "state"
    rc = prepare.main(
        [
            "--config",
            str(tmp_path / "etc" / "course.yaml"),
            "--state",
            str(state),
            "--labs-root",
            str(repo / "data"),
        ]
    )
    assert rc == 0
    layout = StateLayout(state)
    for user in ("alice", "bob", "mallory", "teacher", "helper"):
        assert layout.drop("hubtest", user).is_dir() and layout.user_feedback("hubtest", user)
    assert (layout.exchange("hubtest") / "outbound" / "hello").is_dir()
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{layout.course_dir('hubtest') / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == ["alice", "bob", "mallory"]
    # a course file with a lab whose notebooks are missing fails, naming it
    data["labs"][0]["source"] = "labs/missing"
    (tmp_path / "etc" / "course.yaml").write_text(yaml.safe_dump(data))
    assert (
        prepare.main(
            [
                "--config",
                str(tmp_path / "etc" / "course.yaml"),
                "--state",
                str(tmp_path / "state2"),
                "--labs-root",
                str(repo / "data"),
            ]
        )
        == 1
    )
