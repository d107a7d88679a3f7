"""The umbrella chart's values from the course configuration (``medai helm values COURSE.yaml``).

One course file drives both the embedded hub and the chart: the groups and roles come from
:mod:`medai.hub.roles` (the same functions :mod:`medai.hub.hubconfig` calls), each profile's
pod resources from :class:`medai.isolation.limits.Limits` (the object the local launcher turns
into cgroups), the start timeout and culling from the course's ``servers:`` block.

What is decided here, and why (the chart's ``values.yaml`` holds the course-independent
defaults, with their reasons, and ``helm/values.schema.yaml`` documents every ``medai:`` key):

- **Profiles offered by group.** z2jh offers every ``singleuser.profileList`` entry to everyone;
  the filter by group is a short ``hub.extraConfig`` snippet generated here (below) that turns
  KubeSpawner's ``profile_list`` into a callable over the user's hub groups. The groups are the
  ones :func:`medai.hub.roles.hub_groups` loads, so the filter equals
  :func:`medai.hub.roles.profiles_for` (a test checks every course member).
- **GPU profiles** get ``nvidia.com/gpu`` limits, a node selector and a toleration for the GPU
  nodes' taint; CPU profiles get neither. Every server gets a memory-backed ``/dev/shm``
  (PyTorch's DataLoader workers pass tensors through it; a container's default is 64 MiB),
  sized as the local sandbox sizes it (:meth:`Limits.server`).
- **Exchange: one drop folder per trainee, mounted by subPath.** The embedded hub binds each
  trainee's own drop (``drop/<course>/<user>``, writable) and own feedback (read-only) into
  their sandbox, and the exchange keeper copies drops into the trusted inbound with receipts.
  On Kubernetes all trainee pods run as the same uid, so nbgrader's shared exchange (a
  world-writable inbound guarded by Unix permissions) would let trainees read and replace each
  other's submissions; instead each pod mounts only its own subPaths of the state volume, and
  the keeper runs unchanged in the course Deployment. A pod cannot name another trainee's path
  because the subPath is expanded by KubeSpawner from the hub's user name, not by the trainee.
- **Network.** Trainee pods may reach the hub (z2jh's rule), DNS in ``kube-system``, and the
  course's own services; nothing else, no internet (``egressAllowRules`` all false). Staff
  content (the formgrader, the grading page) is served as hub services; with a public host set,
  ``subdomain_host`` gives each user and each service its own origin, as on one machine.
"""

from __future__ import annotations

import json
from pathlib import Path

from medai.config import CourseConfig, Profile
from medai.hub import roles
from medai.hub.hubconfig import grading_page_path
from medai.hub.layout import (
    SANDBOX_COURSE_ROOT,
    SANDBOX_DATA,
    SANDBOX_EXCHANGE,
    SANDBOX_JUPYTER_CONFIG,
    StateLayout,
)
from medai.hub.origins import Origins, check_public_host
from medai.hub.staffpages import FORMGRADER_SERVER_ARGS
from medai.isolation.limits import Limits, parse_mb

# Where the course's services see the state volume (the StateLayout root on one machine).
STATE_MOUNT = "/srv/medai/state"
GRADING_PORT = 8080
FORMGRADER_PORT = 8888
HOME = "/home/jovyan"  # z2jh's home mount path: images built from jupyter's stacks expect it
TRAINEE_UID = 1000  # z2jh's singleuser.uid; the course services run as the same uid
GPU_RESOURCE = "nvidia.com/gpu"
CPU_GUARANTEE_SHARE = 0.25  # a server's CPU request, as a share of its limit (see below)
# The taint/label NVIDIA's GPU operator and the cloud GPU node pools set (operator docs list
# how to change them for other clusters).
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# z2jh gives user pods these two tolerations; a profile that sets ``tolerations`` replaces the
# list, so GPU profiles repeat them.
Z2JH_USER_TOLERATIONS = [
    {"key": key, "operator": "Equal", "value": "user", "effect": "NoSchedule"}
    for key in ("hub.jupyter.org/dedicated", "hub.jupyter.org_dedicated")
]

# role in the course config -> the hub group :func:`roles.hub_groups` puts its people in
_ROLE_GROUP = {
    "instructors": "{course}-instructors",
    "tas": "{course}-tas",
    "trainees": roles.student_group("{course}"),
}


def profile_limits(p: Profile) -> Limits:
    """A server profile's limits: the same constructor the local launcher uses."""
    return Limits.server(
        memory_mb=parse_mb(p.mem_limit), cpus=p.cpu_limit, processes=p.max_processes
    )


def profile_groups(cfg: CourseConfig, p: Profile) -> list[str]:
    """The hub groups whose members may choose profile ``p``."""
    return sorted(_ROLE_GROUP[r].format(course=cfg.course.id) for r in p.groups)


def _profile_entry(p: Profile, default: bool) -> dict:
    res = profile_limits(p).k8s_resources()
    override: dict = {
        # KubeSpawner's byte spelling: M is MiB, as in Limits
        "mem_limit": res["limits"]["memory"].removesuffix("i"),
        "mem_guarantee": res["requests"]["memory"].removesuffix("i"),
        "cpu_limit": p.cpu_limit,
        # CPU is lent back when idle and memory is not: a server reserves all its memory (no
        # node can run out and kill a kernel mid-class) but a quarter of its cores, since a
        # class mostly reads and types and a busy kernel still gets its limit on a quiet node
        "cpu_guarantee": round(p.cpu_limit * CPU_GUARANTEE_SHARE, 3),
    }
    if p.gpus:
        n = str(p.gpus)
        override |= {
            "extra_resource_limits": {GPU_RESOURCE: n},
            "extra_resource_guarantees": {GPU_RESOURCE: n},
            "node_selector": dict(GPU_NODE_SELECTOR),
            "tolerations": [*Z2JH_USER_TOLERATIONS, GPU_TOLERATION],
        }
    entry = {
        "display_name": p.display_name,
        "slug": p.name,
        "description": f"{p.cpu_limit:g} CPU, {p.mem_limit} memory"
        + (f", {p.gpus} GPU" if p.gpus else ""),
        "kubespawner_override": override,
    }
    if default:
        entry["default"] = True
    return entry


# Run by z2jh's jupyterhub_config.py after it has set KubeSpawner.profile_list from
# singleuser.profileList; written by hand because z2jh has no per-group profile option.
_PROFILE_FILTER = """\
# Generated by `medai helm values` (medai/k8s/values.py): offer each profile only to the hub
# groups the course configuration names for it (medai.hub.roles.profiles_for, on Kubernetes).
import json as _json

_medai_profile_groups = _json.loads({groups!r})
_medai_profiles = list(c.KubeSpawner.profile_list)


def _medai_profile_list(spawner):
    mine = {{g.name for g in spawner.user.groups}}
    return [p for p in _medai_profiles if mine & set(_medai_profile_groups.get(p["slug"], []))]


c.KubeSpawner.profile_list = _medai_profile_list
"""


def profile_filter_code(cfg: CourseConfig) -> str:
    groups = {p.name: profile_groups(cfg, p) for p in cfg.profiles}
    return _PROFILE_FILTER.format(groups=json.dumps(groups, sort_keys=True))


def load_roles(cfg: CourseConfig) -> dict[str, dict]:
    """``hub.loadRoles``: the embedded hub's course roles, keyed by name as z2jh wants them.

    The idle culler's role is z2jh's own (same scopes as :func:`roles.culler_scopes`); the
    class-session service does not run on Kubernetes yet, so its roles are left out.
    """
    out = {}
    for role in roles.hub_roles(cfg):
        body = {k: v for k, v in role.items() if k != "name"}
        out[role["name"]] = body
    return out


def trainee_mounts(cfg: CourseConfig, state_claim: str) -> tuple[list[dict], list[dict]]:
    """Volumes and mounts of every user pod beyond z2jh's home volume.

    Paths inside the pod are the embedded sandbox's (:mod:`medai.hub.layout`); the subPaths are
    the StateLayout's relative paths, so the course services see the same tree as on one
    machine. ``{unescaped_username}`` is expanded by KubeSpawner (course user names are
    ``[a-z][a-z0-9._-]*``, no ``/``).
    """
    course = cfg.course.id
    rel = StateLayout(Path(STATE_MOUNT))
    shm_mb = max(profile_limits(p).shm_mb for p in cfg.profiles)

    def sub(path) -> str:
        return str(path.relative_to(rel.root))

    volumes = [
        {"name": "medai-state", "persistentVolumeClaim": {"claimName": state_claim}},
        # nbgrader insists that the exchange root is writable: a small tmpfs nobody reads
        {"name": "exchange-root", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{shm_mb}Mi"}},
    ]
    inside = f"{SANDBOX_EXCHANGE}/{course}"
    mounts = [
        {
            "name": "medai-state",
            "mountPath": SANDBOX_DATA,
            "subPath": sub(rel.public_data),
            "readOnly": True,
        },
        {"name": "exchange-root", "mountPath": SANDBOX_EXCHANGE},
        {
            "name": "medai-state",
            "mountPath": f"{inside}/outbound",
            "subPath": sub(rel.exchange(course) / "outbound"),
            "readOnly": True,
        },
        {
            "name": "medai-state",
            "mountPath": f"{inside}/inbound",
            "subPath": sub(rel.drop(course, "{unescaped_username}")),
        },
        {
            "name": "medai-state",
            "mountPath": f"{inside}/feedback",
            "subPath": sub(rel.user_feedback(course, "{unescaped_username}")),
            "readOnly": True,
        },
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    return volumes, mounts


def formgrader_command(grading_page: str) -> list[str]:
    """The formgrader's command: the embedded hub's (medai.hub.hubconfig) server arguments, the
    guard that sends Autograde to the grading service, with the service's in-cluster address."""
    api = f"http://medai-grading:{GRADING_PORT}{grading_page_path()}api"
    return [
        "python",
        "-m",
        "medai.hub.singleuser",
        f"--ServerApp.root_dir={SANDBOX_COURSE_ROOT}",
        "--ServerApp.jpserver_extensions=medai.hub.formgrader_guard=True",
        f"--MedaiFormgraderGuard.grading_api={api}",
        f"--MedaiFormgraderGuard.grading_page={grading_page}",
        *FORMGRADER_SERVER_ARGS,
    ]


IMAGE_PREFIX = "/usr/local"  # sys.prefix of the trainee image (python:3.11 images)


def trainee_jupyter_files(cfg: CourseConfig) -> dict[str, dict]:
    """``singleuser.extraFiles``: the Jupyter and nbgrader configuration the embedded hub writes
    for every sandbox (:func:`medai.hub.spawner.write_user_jupyter_config`: exchange paths,
    kernels on IPC sockets, no extension installs, nothing fetched, idle-kernel culling),
    written by that same function and mounted read-only at the same path."""
    import tempfile

    from medai.hub.spawner import kernel_culling, write_user_jupyter_config

    servers = cfg.servers
    cull = kernel_culling(int(servers.idle_kernel_minutes * 60), servers.cull_connected_kernels)
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the user is z2jh's image user: its home, /home/jovyan, is the assignment folder
        folder = write_user_jupyter_config(StateLayout(Path(tmp)), HOME.rsplit("/", 1)[1], cull)
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = f.relative_to(folder).as_posix()
            text = f.read_text()
            if rel == "jupyter_server_config.json":  # the image's software paths, not ours
                server = json.loads(text)
                server["LabServerApp"]["labextensions_path"] = [
                    f"{IMAGE_PREFIX}/share/jupyter/labextensions",
                    "/usr/share/jupyter/labextensions",
                ]
                text = json.dumps(server, indent=2)
            key = "medai-jupyter-" + rel.replace("/", "-")
            files[key] = {"mountPath": f"{SANDBOX_JUPYTER_CONFIG}/{rel}", "stringData": text}
    return files


def trainee_env() -> dict[str, str]:
    """``singleuser.extraEnv``: the embedded sandbox's environment
    (:func:`medai.hub.spawner.sandbox_env`) for the image user, less what the image decides
    (its user, shell and PATH)."""
    from medai.hub.spawner import sandbox_env
    from medai.isolation.bwrap import Software

    user = HOME.rsplit("/", 1)[1]
    env = sandbox_env(user, Software(paths=(), path_env=""))
    return {k: v for k, v in env.items() if k not in {"HOME", "USER", "LOGNAME", "SHELL", "PATH"}}


def course_file(cfg: CourseConfig) -> str:
    """The course configuration as YAML (every field spelled out): the course services
    prepare the state volume from it as ``medai up`` does on one machine."""
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def helm_values(
    cfg: CourseConfig,
    *,
    public_host: str | None = None,
    state_claim: str = "medai-state",
    hub_admins: tuple[str, ...] = (),
) -> dict:
    """The course's values for the umbrella chart (``helm install -f`` on top of its defaults).

    ``hub_admins``: operator accounts (outside the course) that authorise sign-ups; a hub admin
    can open every server, which is why no course member may be one."""
    members = set(cfg.people.everyone)
    clash = sorted(set(hub_admins) & members)
    if clash:
        raise ValueError(
            f"hub admin(s) {', '.join(clash)} are course members; a hub admin can open every "
            "trainee's server, so use an operator account that is not in the course file"
        )
    course = cfg.course.id
    servers = cfg.servers
    profiles = [_profile_entry(p, i == 0) for i, p in enumerate(cfg.profiles)]
    volumes, mounts = trainee_mounts(cfg, state_claim)
    idle_s = int(servers.idle_server_minutes * 60)
    service_url = {
        roles.GRADING_SERVICE: f"http://medai-grading:{GRADING_PORT}",
        course: f"http://medai-formgrader:{FORMGRADER_PORT}",
    }
    services = {
        name: {
            "url": url,
            "display": True,
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": (
                [f"access:services!service={roles.GRADING_SERVICE}"] if name == course else []
            ),
        }
        for name, url in service_url.items()
    }
    hub_config: dict = {
        "Authenticator": {
            "allowed_users": sorted(members | set(hub_admins)),
            "admin_users": sorted(hub_admins),
        },
        "JupyterHub": {
            # z2jh has no loadGroups key; the hub's own trait takes them
            "load_groups": roles.hub_groups(cfg),
            "template_vars": {"medai_course": cfg.course.title, "medai_course_id": course},
        },
        "KubeSpawner": {"default_url": "/lab"},
    }
    grading_page = grading_page_path()
    public: dict = {"hub": "", "services": {}}
    if public_host:
        origins = Origins(check_public_host(public_host), 443, scheme="https")
        hub_config["JupyterHub"]["subdomain_host"] = origins.hub
        grading_page = origins.service_url(roles.GRADING_SERVICE) + "/"
        # what JupyterHub tells the services it starts itself (JUPYTERHUB_HOST and the public
        # URLs), for the course services it does not start: OAuth redirects cross origins
        public = {
            "hub": origins.hub,
            "services": {name: origins.service_url(name) + "/" for name in service_url},
        }
    jh = {
        "hub": {
            "config": hub_config,
            "loadRoles": load_roles(cfg),
            "services": services,
            "extraConfig": {"medai-profiles-by-group": profile_filter_code(cfg)},
        },
        "singleuser": {
            "profileList": profiles,
            "startTimeout": int(servers.start_timeout_minutes * 60),
            "storage": {"extraVolumes": volumes, "extraVolumeMounts": mounts},
            "extraFiles": trainee_jupyter_files(cfg),
            "extraEnv": trainee_env(),
        },
        "cull": {
            "enabled": idle_s > 0,
            "timeout": idle_s or 3600,
            "every": max(60, min(600, idle_s // 3)) if idle_s else 600,
        },
    }
    return {
        "medai": {
            "course": {"id": course, "title": cfg.course.title},
            "courseFile": course_file(cfg),
            "users": sorted(cfg.people.everyone),
            "labs": [{"id": lab.id, "title": lab.title} for lab in cfg.labs if lab.release],
            "formgrader": {"command": formgrader_command(grading_page)},
            "public": public,
            "storage": {
                "state": {"existingClaim": "" if state_claim == "medai-state" else state_claim}
            },
        },
        "jupyterhub": jh,
    }
