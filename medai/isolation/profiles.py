"""The sandbox profiles, each a :class:`~medai.isolation.bwrap.Profile` built from plain inputs.

| profile | sees (read-only unless marked rw) | network | limits |
|---|---|---|---|
| trainee server | own home (rw), own drop (rw), own feedback, released labs, public data, the course catalogue and its models, its generated Jupyter config | own namespace; its HTTP port in, the hub API out | the course profile's memory, CPU, processes |
| formgrader | the course folder (rw), the exchange (feedback and outbound rw), public data | own namespace; its HTTP port in, the hub API out | staff profile |
| grading job | the job folder (submission + inputs), public data | none (loopback only) | the grading policy's |
| data job | the job folder (code), one private dataset at /private | none (loopback only) | the dataset's release policy |

Nothing else of the state folder is bound into any of them: not the hub database or cookie
secret, not the accounts, not the data secret, not other users' homes or drops, not hidden data.
The deliberate differences are the arguments below; the shared rules are in
:mod:`medai.isolation.bwrap`.
"""

from __future__ import annotations

from pathlib import Path

from medai.hub.layout import (
    SANDBOX_CATALOG,
    SANDBOX_COURSE_ROOT,
    SANDBOX_DATA,
    SANDBOX_EXCHANGE,
    SANDBOX_JUPYTER_CONFIG,
    StateLayout,
    sandbox_home,
)
from medai.isolation.bwrap import ETC_JOB, ETC_SERVER, Bind, Profile, Software
from medai.isolation.limits import Limits


def trainee_server(
    layout: StateLayout, user: str, courses: list[str], software: Software, limits: Limits
) -> Profile:
    """A trainee's (or staff member's own) Jupyter server."""
    home = sandbox_home(user)
    etc = layout.sandbox_etc(user)
    binds = [
        Bind(str(etc / "jupyter"), SANDBOX_JUPYTER_CONFIG),
        Bind(str(layout.home(user)), home, writable=True),
        Bind(str(layout.public_data), SANDBOX_DATA),
    ]
    for course in courses:
        inside = f"{SANDBOX_EXCHANGE}/{course}"
        binds += [
            Bind(str(layout.exchange(course) / "outbound"), f"{inside}/outbound"),
            Bind(str(layout.drop(course, user)), f"{inside}/inbound", writable=True),
            Bind(str(layout.user_feedback(course, user)), f"{inside}/feedback"),
        ]
    # The course catalogue (medai.catalog): its page and the models, read-only. Only what the
    # host publishes there (reference models, models the data sandbox released) is in it.
    binds.append(Bind(str(layout.catalog), SANDBOX_CATALOG))
    return Profile(
        name="trainee-server",
        hostname="medai",
        identity=etc,
        software=software,
        binds=tuple(binds),
        # nbgrader insists that the exchange root is writable: a 1 MiB tmpfs nobody reads
        tmpfs=(("/tmp", limits.tmp_mb), ("/dev/shm", limits.shm_mb), (SANDBOX_EXCHANGE, 1)),
        etc=ETC_SERVER,
        chdir=home,
        network="forward",
    )


def formgrader(
    layout: StateLayout, course: str, account: str, software: Software, limits: Limits
) -> Profile:
    """The course's nbgrader formgrader: course staff's server over the course folder.

    It never gets hidden data, the data secret or the gradebook's neighbours in the state folder;
    grading with hidden labels happens in the trusted grading service instead.
    """
    ex = layout.exchange(course)
    inside = f"{SANDBOX_EXCHANGE}/{course}"
    binds = (
        Bind(str(layout.course_dir(course)), SANDBOX_COURSE_ROOT, writable=True),
        Bind(str(ex / "inbound"), f"{inside}/inbound"),
        Bind(str(ex / "outbound"), f"{inside}/outbound", writable=True),
        Bind(str(ex / "feedback"), f"{inside}/feedback", writable=True),
        Bind(str(layout.public_data), SANDBOX_DATA),
    )
    env = (
        ("HOME", "/tmp"),
        ("MEDAI_DATA", SANDBOX_DATA),
        ("MEDAI_COURSE_DIR", SANDBOX_COURSE_ROOT),
        ("PATH", software.path_env),
        ("JUPYTER_CONFIG_PATH", SANDBOX_COURSE_ROOT),
        ("JUPYTER_RUNTIME_DIR", "/tmp/jupyter-runtime"),
    )
    return Profile(
        name="formgrader",
        hostname="formgrader",
        identity=layout.sandbox_etc(account),
        software=software,
        binds=binds,
        tmpfs=(("/tmp", limits.tmp_mb), ("/dev/shm", limits.shm_mb), (SANDBOX_EXCHANGE, 1)),
        etc=ETC_SERVER,
        env=env,
        chdir=SANDBOX_COURSE_ROOT,
        network="forward",
    )


JOB_ENV = (
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/scratch"),
    ("LANG", "C.UTF-8"),
    ("LC_ALL", "C.UTF-8"),
    ("MPLBACKEND", "Agg"),
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
)


def _job(
    name: str,
    hostname: str,
    job_dir: Path,
    binds: list[Bind],
    software: Software,
    limits: Limits,
    env: dict[str, str],
) -> Profile:
    """What every job shares: its folder read-only at ``/job``, sized scratch, ``/tmp`` and
    ``/dev/shm``, no network, a scrubbed environment (``env`` on top of :data:`JOB_ENV`)."""
    return Profile(
        name=name,
        hostname=hostname,
        identity=job_dir / "etc",
        software=software,
        binds=(Bind(str(job_dir), "/job"), *binds),
        tmpfs=(
            ("/scratch", limits.scratch_mb),
            ("/tmp", limits.tmp_mb),
            ("/dev/shm", limits.shm_mb),
        ),
        etc=ETC_JOB,
        env=tuple((dict(JOB_ENV) | env).items()),
        clear_env=True,
        chdir="/scratch",
        network="none",
    )


def grading_job(
    job_dir: Path, data_dir: Path | None, software: Software, limits: Limits, env: dict[str, str]
) -> Profile:
    """One submission's run: a job (:func:`_job`) that also reads the public data."""
    binds = [Bind(str(data_dir), SANDBOX_DATA)] if data_dir is not None else []
    return _job("grading-job", "grader", job_dir, binds, software, limits, env)


def data_job(
    job_dir: Path, private_dir: Path, software: Software, limits: Limits, env: dict[str, str]
) -> Profile:
    """One data-sandbox job (:mod:`medai.sandbox`): a job (:func:`_job`) that reads one private
    dataset at ``/private``. Nothing else: not the public data, not other datasets, not the
    sandbox's state, not the data secret. An approved job runs in exactly the same profile."""
    binds = [Bind(str(private_dir), "/private")]
    return _job("data-job", "datajob", job_dir, binds, software, limits, env)
