"""The grader's Kubernetes backend: each submission runs as a Job, one pod, no network.

It implements the grader's ``SandboxBackend`` protocol (:mod:`medai.autograder.sandbox`) with
the same inputs (a :class:`SandboxJob`: job folder, public data, :class:`Limits`) and the same
output (a :class:`SandboxResult` with the runner's JSON records), so the grading pipeline does
not know where a submission ran. The pod, beside the local bubblewrap sandbox:

| local sandbox (bubblewrap) | grading pod (this module) |
|---|---|
| job folder bound read-only at ``/job`` | the job folder, packed into a ConfigMap, unpacked by an init container into an emptyDir mounted read-only at ``/job`` |
| public data read-only at ``/data`` | the state volume's ``data/public`` subPath, read-only, at ``/data`` |
| tmpfs ``/scratch``, ``/tmp``, ``/dev/shm`` sized from ``Limits`` | memory-backed emptyDirs with those sizes |
| memory cgroup: ``Limits.cgroup_memory_bytes()`` | the container's memory limit, the same number |
| rlimits (CPU seconds, address space, file size, open files, no core) | the same ``prlimit`` in front of the runner |
| no network namespace | the chart's deny-all NetworkPolicy (``medai-grading-jobs``); the backend refuses to run while it is missing |
| uid 1000 in a user namespace, no capabilities | ``runAsNonRoot``, uid 1000, all capabilities dropped, read-only root file system, RuntimeDefault seccomp |
| scrubbed environment | only ``JOB_ENV``; no service-account token, no service links |
| wall clock and output caps kept by the parent | the same, kept by this (trusted) process: it deletes the Job at ``wall_s`` and reads at most the output cap from the log |

The runner writes its records to standard output (``MEDAI_RESULT_FD=1``), which is the pod log;
lines that are not JSON objects are the run's log. As locally, nothing in the pod is trusted:
records are parsed with a size cap and scored outside. The process limit has no per-pod
equivalent (it is the kubelet's ``podPidsLimit``, which the operator page asks for); a job with
an oracle (the simulated clinician) needs a two-way channel and is refused with a clear error.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from medai.autograder.sandbox import SandboxJob, SandboxResult
from medai.isolation.limits import Limits
from medai.isolation.profiles import JOB_ENV

JOB_LABEL = {"medai.io/component": "grading-job"}  # what the chart's deny-all policy selects
POLICY_NAME = "medai-grading-jobs"
JOB_UID = 1000
CONFIGMAP_MAX = 1_000_000  # Kubernetes refuses ConfigMaps over 1 MiB (keys and metadata too)
START_TIMEOUT_S = 300  # scheduling and an image pull on a fresh node
_API_LOCK = threading.Lock()


class KubernetesGradingError(RuntimeError):
    """A job this backend cannot run (what, and how to fix it)."""


def prlimit_argv(limits: Limits) -> list[str]:
    """The rlimits of the local sandbox, set in the pod by util-linux ``prlimit``."""
    args = [
        "prlimit",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--fsize={limits.file_size_mb * 1024 * 1024}",
        f"--nofile={limits.open_files}",
        "--core=0",
    ]
    if limits.cpu_s is not None:
        args.insert(1, f"--cpu={limits.cpu_s}")
    return [*args, "--"]


def pack_job(job_dir: Path) -> bytes:
    """The job folder (job.json, files/, inputs/) as a gzipped tar, owner and modes normalised."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isfile() or info.isdir()):
            return None  # the grader wrote this folder; anything else is not a job file
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() else 0o644
        info.mtime = 0
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
        for name in ("job.json", "files", "inputs"):
            if (job_dir / name).exists():
                tar.add(job_dir / name, arcname=name, filter=clean)
    return buf.getvalue()


def parse_output(text: str) -> tuple[list[dict], int, str]:
    """Records, malformed record lines and the remaining log from the pod's output.

    A line is a record when it parses as a JSON object; one that starts like a record (``{``)
    but does not parse counts as malformed, as on the local result pipe; anything else is log.
    """
    records, malformed, log = [], 0, []
    for line in text.splitlines():
        if not line.startswith("{"):
            log.append(line)
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            malformed += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            malformed += 1
    return records, malformed, "\n".join(log)


def _status(records: list[dict], exit_code: int | None, wall: float, limits: Limits) -> str:
    """The local backend's rule: no ``done`` record is a crash, or a time-out when the kernel
    ended a busy loop at its CPU-seconds limit (SIGKILL after about ``cpu_s``)."""
    if any(r.get("type") == "done" for r in records):
        return "ok"
    killed = exit_code in (137, -9)
    if killed and limits.cpu_s is not None and wall >= 0.8 * limits.cpu_s:
        return "timeout"
    return "crashed"


@dataclass
class KubernetesBackend:
    """Runs each :class:`SandboxJob` as a Job in ``namespace`` (see the module docstring).

    ``state_mount``/``state_claim``: where this process sees the course state volume, and its
    claim name; a job's ``data_dir`` must lie below ``state_mount`` and is mounted from the
    claim by subPath, read-only.
    """

    namespace: str
    image: str
    state_claim: str | None = None
    state_mount: Path | None = None
    poll_s: float = 0.5
    start_timeout_s: float = START_TIMEOUT_S
    name: str = "kubernetes"
    secure: bool = True
    _clients: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_env(cls) -> KubernetesBackend:
        """As the grading Deployment configures it (``MEDAI_K8S_*``, see helm/templates)."""
        missing = [v for v in ("MEDAI_K8S_NAMESPACE", "MEDAI_K8S_IMAGE") if not os.environ.get(v)]
        if missing:
            raise KubernetesGradingError(
                f"{', '.join(missing)} not set: the Kubernetes backend runs in the chart's "
                "medai-grading Deployment, which sets them (helm/templates/grading.yaml)"
            )
        mount = os.environ.get("MEDAI_K8S_STATE_MOUNT")
        return cls(
            namespace=os.environ["MEDAI_K8S_NAMESPACE"],
            image=os.environ["MEDAI_K8S_IMAGE"],
            state_claim=os.environ.get("MEDAI_K8S_STATE_CLAIM") or None,
            state_mount=Path(mount) if mount else None,
        )

    # ------------------------------------------------------------------------ the objects

    def _data_subpath(self, data_dir: Path) -> str:
        if self.state_claim is None or self.state_mount is None:
            raise KubernetesGradingError(
                "this job reads data, but the backend has no state volume "
                "(MEDAI_K8S_STATE_CLAIM and MEDAI_K8S_STATE_MOUNT)"
            )
        try:
            return str(data_dir.resolve().relative_to(self.state_mount.resolve()))
        except ValueError:
            raise KubernetesGradingError(
                f"data folder {data_dir} is not on the state volume mounted at "
                f"{self.state_mount}; grading pods can only mount data from that volume"
            ) from None

    def objects(self, job: SandboxJob, run_id: str, archive: bytes):
        """The ConfigMap (the packed job) and the Job for one run, as kubernetes client models."""
        from kubernetes import client as k

        limits = job.limits
        name = f"medai-grade-{run_id}"
        labels = {**JOB_LABEL, "medai.io/run": run_id}
        env = dict(JOB_ENV) | {"MEDAI_GRADING": "1", "MEDAI_RESULT_FD": "1"}
        data_mounts, data_volumes = [], []
        if job.data_dir is not None:
            env["MEDAI_DATA"] = "/data"
            data_mounts = [
                k.V1VolumeMount(
                    name="state",
                    mount_path="/data",
                    sub_path=self._data_subpath(job.data_dir),
                    read_only=True,
                )
            ]
            data_volumes = [
                k.V1Volume(
                    name="state",
                    persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                        claim_name=self.state_claim, read_only=True
                    ),
                )
            ]

        def tmpfs(vol: str, mb: int) -> k.V1Volume:
            return k.V1Volume(
                name=vol,
                empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit=f"{max(1, mb)}Mi"),
            )

        security = k.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=JOB_UID,
            run_as_group=100,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            privileged=False,
            capabilities=k.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
        )
        # memory-backed emptyDirs are charged to the container, as tmpfs pages are to the
        # local memory cgroup: the same total
        memory = f"{limits.cgroup_memory_bytes() // (1024 * 1024)}Mi"
        cpu = f"{int((limits.cpus or 1.0) * 1000)}m"
        resources = k.V1ResourceRequirements(
            limits={"memory": memory, "cpu": cpu}, requests={"memory": memory, "cpu": cpu}
        )
        unpack = k.V1Container(
            name="unpack",
            image=self.image,
            command=[
                "python",
                "-I",
                "-c",
                "import tarfile; tarfile.open('/packed/job.tgz').extractall('/job', filter='data')",
            ],
            security_context=security,
            resources=k.V1ResourceRequirements(
                limits={"memory": "256Mi", "cpu": "500m"},
                requests={"memory": "256Mi", "cpu": "500m"},
            ),
            volume_mounts=[
                k.V1VolumeMount(name="packed", mount_path="/packed", read_only=True),
                k.V1VolumeMount(name="job", mount_path="/job"),
            ],
        )
        runner = k.V1Container(
            name="runner",
            image=self.image,
            command=[
                *prlimit_argv(limits),
                "python",
                "-I",
                "-m",
                "medai.autograder.runner",
                "/job",
            ],
            env=[k.V1EnvVar(name=n, value=v) for n, v in sorted(env.items())],
            working_dir="/scratch",
            security_context=security,
            resources=resources,
            volume_mounts=[
                k.V1VolumeMount(name="job", mount_path="/job", read_only=True),
                k.V1VolumeMount(name="scratch", mount_path="/scratch"),
                k.V1VolumeMount(name="tmp", mount_path="/tmp"),
                k.V1VolumeMount(name="shm", mount_path="/dev/shm"),
                *data_mounts,
            ],
        )
        wall = limits.wall_s or 3600
        pod = k.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            enable_service_links=False,
            hostname="grader",
            security_context=k.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=JOB_UID,
                run_as_group=100,
                seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
            ),
            init_containers=[unpack],
            containers=[runner],
            volumes=[
                k.V1Volume(
                    name="packed",
                    config_map=k.V1ConfigMapVolumeSource(name=name, default_mode=0o444),
                ),
                tmpfs("job", 2 * len(archive) // (1024 * 1024) + 64),
                tmpfs("scratch", limits.scratch_mb),
                tmpfs("tmp", limits.tmp_mb),
                tmpfs("shm", limits.shm_mb),
                *data_volumes,
            ],
        )
        job_obj = k.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=k.V1ObjectMeta(name=name, namespace=self.namespace, labels=labels),
            spec=k.V1JobSpec(
                backoff_limit=0,
                # a backstop only: this process deletes the Job at the wall clock
                active_deadline_seconds=int(math.ceil(wall + self.start_timeout_s)),
                ttl_seconds_after_finished=600,
                template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=pod),
            ),
        )
        import base64

        config_map = k.V1ConfigMap(
            api_version="v1",
            kind="ConfigMap",
            metadata=k.V1ObjectMeta(name=name, namespace=self.namespace, labels=labels),
            binary_data={"job.tgz": base64.b64encode(archive).decode()},
            immutable=True,
        )
        return config_map, job_obj

    # ------------------------------------------------------------------------ the control loop

    def _api(self):
        """API clients, made once (in the cluster: the pod's service account)."""
        with _API_LOCK:
            if self._clients is None:
                from kubernetes import client, config

                try:
                    config.load_incluster_config()
                except config.ConfigException:
                    config.load_kube_config()
                api = client.ApiClient()
                self._clients = (
                    client.CoreV1Api(api),
                    client.BatchV1Api(api),
                    client.NetworkingV1Api(api),
                )
            return self._clients

    def check_policy(self, net) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            pol = net.read_namespaced_network_policy(POLICY_NAME, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise KubernetesGradingError(
                    f"NetworkPolicy {self.namespace}/{POLICY_NAME} is missing, so grading pods "
                    "would have network access; install the chart (helm/templates/netpol.yaml) "
                    "before grading"
                ) from None
            raise
        spec = pol.spec
        if (
            spec.pod_selector.match_labels != JOB_LABEL
            or sorted(spec.policy_types or []) != ["Egress", "Ingress"]
            or spec.ingress
            or spec.egress
        ):
            raise KubernetesGradingError(
                f"NetworkPolicy {self.namespace}/{POLICY_NAME} is not deny-all for {JOB_LABEL}"
            )

    def run(self, job: SandboxJob) -> SandboxResult:
        if job.oracle is not None:
            raise KubernetesGradingError(
                "this lab asks a simulated clinician during grading (an oracle), which needs a "
                "two-way channel the Kubernetes backend does not have yet; grade it with the "
                "bubblewrap backend"
            )
        from kubernetes import client as k

        core, batch, net = self._api()
        self.check_policy(net)
        archive = pack_job(Path(job.job_dir))
        if len(archive) > CONFIGMAP_MAX * 3 // 4:  # base64 grows it by a third
            raise KubernetesGradingError(
                f"job {job.name}: the packed submission is {len(archive)} bytes, over what a "
                "ConfigMap holds (about 750 kB packed); shrink the lab's released files"
            )
        run_id = uuid.uuid4().hex[:12]
        config_map, job_obj = self.objects(job, run_id, archive)
        created = batch.create_namespaced_job(self.namespace, job_obj)
        config_map.metadata.owner_references = [
            k.V1OwnerReference(
                api_version="batch/v1",
                kind="Job",
                name=created.metadata.name,
                uid=created.metadata.uid,
            )
        ]
        core.create_namespaced_config_map(self.namespace, config_map)
        try:
            return self._follow(core, job, created.metadata.name, run_id)
        finally:
            batch.delete_namespaced_job(
                created.metadata.name, self.namespace, propagation_policy="Background"
            )

    def _follow(self, core, job: SandboxJob, name: str, run_id: str) -> SandboxResult:
        limits = job.limits
        cap = limits.result_mb * 1024 * 1024 + limits.log_kb * 1024
        begun = time.monotonic()
        started: float | None = None
        status, exit_code, notes = None, None, []
        while status is None:
            pods = core.list_namespaced_pod(
                self.namespace, label_selector=f"medai.io/run={run_id}"
            ).items
            state = None
            if pods:
                cs = [c for c in (pods[0].status.container_statuses or []) if c.name == "runner"]
                state = cs[0].state if cs else None
            now = time.monotonic()
            if state is not None and (state.running or state.terminated) and started is None:
                started = now
            if state is not None and state.terminated:
                exit_code = state.terminated.exit_code
                if state.terminated.reason == "OOMKilled":
                    notes.append("memory limit reached (OOMKilled)")
                break
            if started is None and pods and pods[0].status.phase == "Failed":
                status = "crashed"  # e.g. the unpacking init container failed
                notes.append(
                    f"the grading pod failed before the runner started: "
                    f"{pods[0].status.reason or pods[0].status.message or 'unknown'}"
                )
            elif started is None and now - begun > self.start_timeout_s:
                status = "crashed"
                notes.append(f"the grading pod did not start within {self.start_timeout_s:.0f}s")
            elif started is not None and limits.wall_s and now - started > limits.wall_s:
                status = "timeout"
            else:
                time.sleep(self.poll_s)
        wall = time.monotonic() - (started or begun)
        text = ""
        if started is not None:
            text = core.read_namespaced_pod_log(
                pods[0].metadata.name, self.namespace, container="runner", limit_bytes=cap + 1
            )
        over = len(text.encode()) > cap
        records, malformed, log = parse_output(text)
        if over:
            status = "output-limit"
        if status is None:
            status = _status(records, exit_code, wall, limits)
        log = log.encode()[: limits.log_kb * 1024].decode("utf-8", "replace")
        return SandboxResult(status, records, exit_code, wall, log, malformed, notes)
