"""Where everything lives: on the host (the state folder) and inside a user's sandbox.

The per-user view is the same one the Kubernetes chart mounts into a trainee's pod, so the paths
inside (``/home/<user>``, ``/srv/medai/exchange``, ``/data``) are constants shared by both.

Host side, below the state folder (``medai up --state DIR``)::

    hub/                      hub database, cookie secret, settings.json, accounts.json,
                              demo-passwords.json (--demo), logs
    data/public/<dataset>/    public splits      -> /data (read-only) in every user sandbox
    data/hidden/<dataset>/    hidden splits      -> graders only, never in a user sandbox
    secrets/data.key          the key the hidden splits are drawn from -> bound into no sandbox
    courses/<course>/         nbgrader course folder (source with solutions, gradebook.db)
    exchange/<course>/outbound/   released labs  -> read-only for everyone
    exchange/<course>/inbound/    submissions the server has received (trusted copies)
    exchange/<course>/feedback/   feedback written by the formgrader
    drop/<course>/<user>/     a user's own submission drop -> .../<course>/inbound in their sandbox
    userfeedback/<course>/<user>/ that user's feedback only -> .../<course>/feedback (read-only)
    receipts/receipts.sqlite  server-side submission receipts (time, hash, secret)
    homes/<user>/             home folders      -> /home/<user>
    catalog/                  the course catalogue (README.md) -> /srv/medai/catalog (read-only)
    catalog/models/<model>/   catalogue models (file + card) -> $MEDAI_MODELS (read-only)
    sandbox/<user>/           generated /etc files and Jupyter config for that user's sandbox
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

# Paths inside a sandbox (and inside a Kubernetes pod).
SANDBOX_EXCHANGE = "/srv/medai/exchange"
SANDBOX_DATA = "/data"
SANDBOX_JUPYTER_CONFIG = "/opt/medai/etc/jupyter"
SANDBOX_COURSE_ROOT = "/srv/medai/course"
# The course catalogue (medai.catalog): its page and the models, read-only in a trainee's server.
SANDBOX_CATALOG = "/srv/medai/catalog"
SANDBOX_MODELS = f"{SANDBOX_CATALOG}/models"


def sandbox_home(user: str) -> str:
    return f"/home/{user}"


@dataclass(frozen=True)
class StateLayout:
    root: Path

    @property
    def hub(self) -> Path:
        return self.root / "hub"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def public_data(self) -> Path:
        return self.root / "data" / "public"

    @property
    def hidden_data(self) -> Path:
        return self.root / "data" / "hidden"

    @property
    def data_secret(self) -> Path:
        """The deployment's data key (``medai.synthetic.secret``): never bind ``secrets/``."""
        return self.root / "secrets" / "data.key"

    @property
    def catalog(self) -> Path:
        """The course catalogue's folder (``medai.catalog``): written on the host only."""
        return self.root / "catalog"

    @property
    def models(self) -> Path:
        return self.catalog / "models"

    @property
    def receipts_db(self) -> Path:
        return self.root / "receipts" / "receipts.sqlite"

    @property
    def settings_file(self) -> Path:
        return self.hub / "settings.json"

    @property
    def accounts_file(self) -> Path:
        return self.hub / "accounts.json"

    @property
    def demo_passwords_file(self) -> Path:
        return self.hub / "demo-passwords.json"  # ``medai up --demo``: plain text, mode 0600

    def course_dir(self, course: str) -> Path:
        return self.root / "courses" / course

    def exchange(self, course: str) -> Path:
        return self.root / "exchange" / course

    def drop(self, course: str, user: str) -> Path:
        return self.root / "drop" / course / user

    def user_feedback(self, course: str, user: str) -> Path:
        return self.root / "userfeedback" / course / user

    def home(self, user: str) -> Path:
        return self.root / "homes" / user

    def sandbox_etc(self, user: str) -> Path:
        return self.root / "sandbox" / user

    def server_cgroup(self, user: str) -> str:
        """Name of the cgroup of ``user``'s server: the same on every start, and different for
        every state folder (several hubs on one machine), so the class service can find it
        and measure the server's memory."""
        tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        return f"medai-{tag}-{user}"

    @property
    def class_sessions_file(self) -> Path:
        return self.hub / "class-sessions.json"  # the class service's open and closed sessions

    @property
    def class_cli_file(self) -> Path:
        return self.hub / "class-cli.json"  # URL and token of `medai class` (mode 0600)

    def all_dirs(self, course: str, users: list[str]) -> list[Path]:
        ex = self.exchange(course)
        dirs = [
            self.hub,
            self.public_data,
            self.hidden_data,
            self.course_dir(course),
            ex / "outbound",
            ex / "inbound",
            ex / "feedback",
            self.receipts_db.parent,
            self.models,
        ]
        for u in users:
            dirs += [
                self.drop(course, u),
                self.user_feedback(course, u),
                self.home(u),
                self.sandbox_etc(u),
            ]
        return dirs
