"""JupyterHub groups and RBAC roles derived from the course configuration.

The same functions feed the embedded hub and the helm chart's ``hub.loadRoles``/``loadGroups``.

Scopes, and why each is there (nothing else is granted beyond JupyterHub's defaults):

- every user keeps JupyterHub's default ``user`` role (``self``): their own server only;
- course staff (group ``formgrade-<course>``: instructors and TAs) get
  ``access:services!service=<course>`` to open the course's formgrader service, and
  ``list:services!service=<course>`` + ``read:services!service=<course>`` so it is listed on
  their hub home page. Anyone else gets HTTP 403 from the formgrader;
- the formgrader service's own token gets no scopes: nbgrader's roster comes from the course
  configuration (written into the gradebook by ``medai up``), not from the hub API;
- course staff also get ``access:``/``list:``/``read:services!service=medai-grading``: the
  trusted grading service (:mod:`medai.hub.grading`) serves only tokens holding that access
  scope, so trainees get 403. Its own token has no scopes either. The formgrader's OAuth
  client may issue that scope too (``oauth_client_allowed_scopes``), so its Autograde button can
  forward to the grading service with the signed-in user's token; JupyterHub grants a scope
  only to users who hold it, i.e. to staff;
- trainees' servers keep the default ``server`` role token (activity, access to itself): the
  assignment list reads the exchange folders mounted into their sandbox, not the hub API.

Class start (:mod:`medai.hub.classes`, :mod:`medai.hub.hubconfig`):

- course staff also get ``access:services!service=medai-class`` (+ list/read): the class page;
- the class service's own token may start, stop and read the servers of the course's trainees
  and mark them active (``list:users``, ``read:users``, ``servers``, ``users:activity``,
  each ``!group=nbgrader-<course>``), nothing of anyone else;
- ``medai class`` on the command line uses its own token (``medai-class-cli``), which may only
  call the class service (``access:services!service=medai-class``);
- the idle culler gets what z2jh gives it: ``list:users``, ``read:users:activity``,
  ``read:servers``, ``delete:servers``.

Group names follow nbgrader's documented convention (``formgrade-<course>`` for graders,
``nbgrader-<course>`` for students), so nbgrader's ``JupyterHubAuthPlugin`` can be switched on
later without renaming anything.
"""

from __future__ import annotations

from medai.config import CourseConfig, Profile

GRADING_SERVICE = "medai-grading"  # the trusted grading service (medai.hub.grading)


def staff_group(course: str) -> str:
    return f"formgrade-{course}"


def student_group(course: str) -> str:
    return f"nbgrader-{course}"


def hub_groups(cfg: CourseConfig) -> dict[str, dict]:
    course = cfg.course.id
    p = cfg.people
    return {
        staff_group(course): {"users": sorted(p.staff)},
        student_group(course): {"users": sorted(p.trainees)},
        f"{course}-instructors": {"users": sorted(p.instructors)},
        f"{course}-tas": {"users": sorted(p.tas)},
    }


def staff_scopes(course: str) -> list[str]:
    return [
        f"access:services!service={course}",
        f"list:services!service={course}",
        f"read:services!service={course}",
        f"access:services!service={GRADING_SERVICE}",
        f"list:services!service={GRADING_SERVICE}",
        f"read:services!service={GRADING_SERVICE}",
    ]


CLASS_SERVICE = "medai-class"  # the class-session service (medai.hub.classes)
CLASS_CLI_SERVICE = "medai-class-cli"  # the token of `medai class` on the command line
CULLER_SERVICE = "idle-culler"  # jupyterhub-idle-culler, as z2jh names it


def class_service_scopes(course: str) -> list[str]:
    """What the class service may do: only to the course's trainees' servers."""
    group = student_group(course)
    return [
        f"list:users!group={group}",
        f"read:users!group={group}",
        f"servers!group={group}",
        f"users:activity!group={group}",
    ]


def culler_scopes() -> list[str]:
    return ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def class_roles(cfg: CourseConfig, *, culler: bool) -> list[dict]:
    """Roles of the class-start services (see the module docstring)."""
    course = cfg.course.id
    on_page = [f"{v}:services!service={CLASS_SERVICE}" for v in ("access", "list", "read")]
    roles = [
        {
            "name": f"{course}-class-staff",
            "description": f"Instructors and TAs of {course}: open class sessions",
            "scopes": on_page,
            "groups": [staff_group(course)],
        },
        {
            "name": f"{course}-class-service",
            "description": "The class service: start, keep warm and stop trainees' servers",
            "scopes": class_service_scopes(course),
            "services": [CLASS_SERVICE],
        },
        {
            "name": f"{course}-class-cli",
            "description": "`medai class` on the hub machine: call the class service only",
            "scopes": [f"access:services!service={CLASS_SERVICE}"],
            "services": [CLASS_CLI_SERVICE],
        },
    ]
    if culler:
        roles.append(
            {
                "name": "idle-culler",
                "description": "Stop servers idle for longer than the course allows",
                "scopes": culler_scopes(),
                "services": [CULLER_SERVICE],
            }
        )
    return roles


def hub_roles(cfg: CourseConfig) -> list[dict]:
    course = cfg.course.id
    return [
        {
            "name": f"{course}-staff",
            "description": f"Instructors and TAs of {course}: open the course formgrader",
            "scopes": staff_scopes(course),
            "groups": [staff_group(course)],
        },
        {
            # Explicit, so a reader of the generated config sees the whole token surface.
            "name": f"{course}-formgrader",
            "description": "The formgrader service's own token: no hub API rights",
            "scopes": [],
            "services": [course],
        },
        {
            "name": f"{course}-grading",
            "description": "The grading service's own token: no hub API rights",
            "scopes": [],
            "services": [GRADING_SERVICE],
        },
    ]


def profiles_for(cfg: CourseConfig, user: str) -> list[Profile]:
    """Profiles a user may choose, by their role in the course."""
    role = cfg.role_of(user)
    return [p for p in cfg.profiles if role in p.groups]


SANDBOX_SERVICE = "medai-sandbox"  # the data sandbox (medai.sandbox.service)


def sandbox_custom_scopes() -> dict[str, dict]:
    """The sandbox's own scopes (JupyterHub ``custom_scopes``)."""
    return {
        f"custom:{SANDBOX_SERVICE}:submit": {
            "description": "List sandboxed datasets, request access, submit analysis jobs"
        },
        f"custom:{SANDBOX_SERVICE}:review": {
            "description": "Data owner: review held outputs and access requests, read the audit log"
        },
        f"custom:{SANDBOX_SERVICE}:usage": {
            "description": "Instructor: per-trainee usage and privacy budgets, reset budgets"
        },
    }


def sandbox_user_scopes() -> list[str]:
    on = [f"{v}:services!service={SANDBOX_SERVICE}" for v in ("access", "list", "read")]
    return [*on, f"custom:{SANDBOX_SERVICE}:submit"]


def sandbox_roles(cfg: CourseConfig) -> list[dict]:
    """Everyone in the course may submit; data owners review; instructors see usage."""
    course = cfg.course.id
    owners = sorted({d.owner for d in cfg.sandbox.datasets})
    return [
        {
            "name": f"{course}-sandbox-users",
            "description": "Use the data sandbox: request access, submit jobs, read own results",
            "scopes": sandbox_user_scopes(),
            "users": sorted(cfg.people.everyone),
        },
        {
            "name": f"{course}-sandbox-owners",
            "description": "Data owners: review held outputs and access requests, audit log",
            "scopes": [f"custom:{SANDBOX_SERVICE}:review"],
            "users": owners,
        },
        {
            "name": f"{course}-sandbox-usage",
            "description": "Instructors: trainees' sandbox usage and privacy budgets",
            "scopes": [f"custom:{SANDBOX_SERVICE}:usage"],
            "users": sorted(cfg.people.instructors),
        },
        {
            "name": f"{course}-sandbox-service",
            "description": "The sandbox service's own token: no hub API rights",
            "scopes": [],
            "services": [SANDBOX_SERVICE],
        },
    ]
