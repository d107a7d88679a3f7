"""Per-user sandboxes on one machine, with bubblewrap.

Each user's single-user server runs in its own bubblewrap sandbox: new mount, PID, IPC and UTS
namespaces and a user namespace in which it is an ordinary user (uid 1000) with no capabilities.
It sees only what is bound in:

- read-only: the system (``/usr``), the Python installation and virtualenv, the ``medai`` package
  (not the repository: ``labs/`` holds solutions), a few ``/etc`` files, the public datasets at
  ``/data``, the released labs, its own feedback, and its generated Jupyter configuration;
- read-write: its own home and its own submission drop; ``/tmp`` is a private tmpfs.

Not bound, hence invisible: the hub's state (database, cookie secret, tokens), the gradebook and
course source, other users' homes and submissions, hidden data, the grader's home. The network
namespace is shared, because the proxy must reach the server; the server itself requires a hub
token, and other users' servers do too.

bubblewrap does the isolation; this module only computes its command line (a pure function, so
tests read it without starting anything).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from medai.hub.layout import (
    SANDBOX_DATA,
    SANDBOX_EXCHANGE,
    SANDBOX_JUPYTER_CONFIG,
    StateLayout,
    sandbox_home,
)

SANDBOX_UID = 1000
SANDBOX_GID = 1000

# /etc entries a Python/Jupyter server needs; everything else in /etc stays outside (as root,
# /etc/shadow would otherwise be readable through the user namespace mapping).
ETC_ENTRIES = (
    "ssl",
    "ca-certificates",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "hosts",
    "localtime",
    "mime.types",
    "fonts",
    "alternatives",
    "bash.bashrc",
    "profile",
    "inputrc",
    "terminfo",
)


class IsolationError(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox here."""


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if not path:
        raise IsolationError(
            "bubblewrap (bwrap) is not installed; it isolates each trainee's server. "
            "Install it (Debian/Ubuntu: apt-get install bubblewrap) and start again."
        )
    return path


@dataclass(frozen=True)
class Software:
    """Read-only software paths bound into every sandbox."""

    paths: tuple[str, ...]
    path_env: str

    @classmethod
    def detect(cls) -> Software:
        venv = Path(sys.prefix).resolve()
        base = Path(sys.base_prefix).resolve()
        package = Path(__file__).resolve().parent.parent  # the medai package folder
        paths = []
        for p in (base, venv, package):
            s = str(p)
            if not any(s == q or s.startswith(q + "/") for q in paths) and not s.startswith(
                "/usr/"
            ):
                paths.append(s)
        path_env = ":".join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
        return cls(paths=tuple(paths), path_env=path_env)


def write_sandbox_etc(layout: StateLayout, user: str) -> Path:
    """Write the generated /etc/passwd and /etc/group for ``user``'s sandbox."""
    d = layout.sandbox_etc(user)
    d.mkdir(parents=True, exist_ok=True)
    home = sandbox_home(user)
    (d / "passwd").write_text(
        f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"{user}:x:{SANDBOX_UID}:{SANDBOX_GID}:{user}:{home}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (d / "group").write_text(f"root:x:0:\n{user}:x:{SANDBOX_GID}:\nnogroup:x:65534:\n")
    return d


def _system_binds() -> list[str]:
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), f"/{top}"]
        elif p.is_dir():
            args += ["--ro-bind", str(p), f"/{top}"]
    for entry in ETC_ENTRIES:
        p = Path("/etc") / entry
        if p.exists():
            args += ["--ro-bind", str(p), f"/etc/{entry}"]
    return args


def common_argv(bwrap: str, etc_dir: Path, software: Software) -> list[str]:
    """Namespaces, a fresh /proc, /dev and /tmp, the read-only system and software, and the
    generated passwd/group from ``etc_dir``: the part every sandbox shares."""
    argv = [
        bwrap,
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--hostname",
        "medai",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--dir",
        "/var/tmp",
    ]
    argv += _system_binds()
    argv += ["--ro-bind", str(etc_dir / "passwd"), "/etc/passwd"]
    argv += ["--ro-bind", str(etc_dir / "group"), "/etc/group"]
    for p in software.paths:
        argv += ["--ro-bind", p, p]
    return argv


def user_sandbox_argv(
    layout: StateLayout,
    user: str,
    courses: list[str],
    software: Software,
    bwrap: str = "bwrap",
) -> list[str]:
    """bubblewrap command line (up to and including ``--``) for ``user``'s server."""
    home = sandbox_home(user)
    etc = layout.sandbox_etc(user)
    argv = common_argv(bwrap, etc, software)
    argv += ["--ro-bind", str(etc / "jupyter"), SANDBOX_JUPYTER_CONFIG]
    argv += ["--bind", str(layout.home(user)), home]
    argv += ["--ro-bind", str(layout.public_data), SANDBOX_DATA]
    for course in courses:
        inside = f"{SANDBOX_EXCHANGE}/{course}"
        argv += ["--ro-bind", str(layout.exchange(course) / "outbound"), f"{inside}/outbound"]
        argv += ["--bind", str(layout.drop(course, user)), f"{inside}/inbound"]
        argv += ["--ro-bind", str(layout.user_feedback(course, user)), f"{inside}/feedback"]
    argv += ["--chdir", home, "--"]
    return argv


def sandbox_env(user: str, software: Software) -> dict[str, str]:
    """Environment variables every user sandbox gets (the hub adds its JUPYTERHUB_* ones)."""
    return {
        "HOME": sandbox_home(user),
        "USER": user,
        "LOGNAME": user,
        "SHELL": "/bin/bash",
        "PATH": software.path_env,
        "MEDAI_DATA": SANDBOX_DATA,
        "JUPYTER_CONFIG_PATH": SANDBOX_JUPYTER_CONFIG,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
    }
