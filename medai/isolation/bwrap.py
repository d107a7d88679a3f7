"""The bubblewrap command line of a sandbox, from a :class:`Profile` (a pure function).

Every sandbox this project starts shares one shape, so the rules live here once:

- new user, PID, IPC, UTS, network and cgroup namespaces; an ordinary user inside (uid 1000) with
  no capabilities; ``--die-with-parent`` and ``--new-session`` (no terminal injection);
- a fresh ``/proc`` and ``/dev``, sized private tmpfs mounts (``/tmp``, ``/dev/shm``, and a
  scratch folder for jobs) mounted *before* the binds, so a bind that lives under ``/tmp`` on the
  host is not hidden by them;
- the read-only system (``/usr``, the top-level links, a short list of ``/etc`` entries; never
  all of ``/etc``: as root, ``/etc/shadow`` would be readable through the user mapping), generated
  ``/etc/passwd`` and ``/etc/group``, and the read-only Python software;
- the profile's own binds, each read-only unless it says otherwise; then the root is remounted
  read-only, so the only writable places are the tmpfs mounts and the profile's writable binds.

What differs between the profiles (see :mod:`medai.isolation.profiles`) is a parameter of
:class:`Profile`, never a second copy of these rules. bubblewrap does the isolation; this module
only computes its arguments, so tests read them without starting anything.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_UID = 1000
SANDBOX_GID = 1000

# /etc entries a Python/Jupyter server needs.
ETC_SERVER = (
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
# ... and the few a batch job needs.
ETC_JOB = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf")


class IsolationError(RuntimeError):
    """bubblewrap (or a helper it needs) is missing or cannot create a sandbox here."""


def find_bwrap() -> str:
    path = shutil.which("bwrap")
    if not path:
        raise IsolationError(
            "bubblewrap (bwrap) is not installed; it isolates every trainee's server and every "
            "submission. Install it (Debian/Ubuntu: apt-get install bubblewrap) and start again."
        )
    return path


@dataclass(frozen=True)
class Bind:
    host: str
    inside: str
    writable: bool = False


@dataclass(frozen=True)
class Software:
    """Read-only software paths bound into every sandbox (never the repository: labs/ holds
    solutions), and the PATH inside."""

    paths: tuple[str, ...]
    path_env: str

    @classmethod
    def detect(cls) -> Software:
        from medai.paths import package_dir

        venv = Path(sys.prefix).resolve()
        base = Path(sys.base_prefix).resolve()
        package = package_dir().resolve()  # the package folder, not the checkout
        paths: list[str] = []
        for p in (base, venv, package):
            s = str(p)
            if not any(s == q or s.startswith(q + "/") for q in paths) and not s.startswith(
                "/usr/"
            ):
                paths.append(s)
        path_env = ":".join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
        return cls(paths=tuple(paths), path_env=path_env)


@dataclass(frozen=True)
class Profile:
    """Everything that makes one sandbox different from another."""

    name: str  # trainee-server | formgrader | grading-job | data-job
    hostname: str
    identity: Path  # folder holding the generated passwd and group (see write_identity)
    software: Software
    binds: tuple[Bind, ...] = ()
    tmpfs: tuple[tuple[str, int], ...] = ()  # (path inside, size in MiB)
    etc: tuple[str, ...] = ETC_SERVER
    env: tuple[tuple[str, str], ...] = ()  # set with --setenv
    clear_env: bool = False  # True: only ``env`` inside; False: the caller's environment too
    chdir: str = "/"
    # Network: "none" is loopback only (jobs); "forward" is loopback too, with the server's HTTP
    # port forwarded in and the hub's API port forwarded out by pasta (medai.isolation.netns).
    network: str = "none"
    extra: tuple[str, ...] = field(default=())  # rare, explicit extras (e.g. --dir)


def write_identity(folder: Path, user: str, home: str, shell: str = "/bin/bash") -> Path:
    """Write the sandbox's /etc/passwd and /etc/group for ``user`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passwd").write_text(
        "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"{user}:x:{SANDBOX_UID}:{SANDBOX_GID}:{user}:{home}:{shell}\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (folder / "group").write_text(f"root:x:0:\n{user}:x:{SANDBOX_GID}:\nnogroup:x:65534:\n")
    return folder


def _system_binds(etc: tuple[str, ...]) -> list[str]:
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        p = Path("/") / top
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), f"/{top}"]
        elif p.is_dir():
            args += ["--ro-bind", str(p), f"/{top}"]
    for entry in etc:
        p = Path("/etc") / entry
        if p.exists():
            args += ["--ro-bind", str(p), f"/etc/{entry}"]
    return args


def argv(profile: Profile, bwrap: str = "bwrap") -> list[str]:
    """The bubblewrap command line for ``profile``, up to and including ``--``."""
    a = [bwrap, "--unshare-all", "--unshare-user", "--unshare-cgroup-try"]
    a += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID), "--hostname", profile.hostname]
    a += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    a += ["--proc", "/proc", "--dev", "/dev"]
    for inside, size_mb in profile.tmpfs:
        a += ["--size", str(size_mb * 1024 * 1024), "--tmpfs", inside]
    a += _system_binds(profile.etc)
    a += ["--ro-bind", str(profile.identity / "passwd"), "/etc/passwd"]
    a += ["--ro-bind", str(profile.identity / "group"), "/etc/group"]
    for p in profile.software.paths:
        a += ["--ro-bind", p, p]
    for b in profile.binds:
        a += ["--bind" if b.writable else "--ro-bind", b.host, b.inside]
    a += list(profile.extra)
    a += ["--remount-ro", "/"]
    if profile.clear_env:
        a.append("--clearenv")
    for k, v in profile.env:
        a += ["--setenv", k, v]
    a += ["--chdir", profile.chdir, "--"]
    return a
