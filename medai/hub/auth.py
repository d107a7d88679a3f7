"""Accounts for one server: NativeAuthenticator, with accounts created by the instructor.

NativeAuthenticator keeps bcrypt password hashes in the hub database and gives users a
change-password page. Self sign-up is off: accounts are the course configuration's people, and
their initial passwords come from ``<state>/hub/accounts.json`` (``medai accounts
set-password``, or the fixed demo passwords of ``medai up --demo``), which this class loads into
NativeAuthenticator's table when the hub starts and again whenever the file changes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode


def read_accounts(path: Path) -> dict[str, str]:
    """``{username: bcrypt hash}`` from an accounts file (missing file: no accounts)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of username -> bcrypt hash")
    return {str(k): str(v) for k, v in data.items()}


def write_accounts(path: Path, accounts: dict[str, str]) -> None:
    """Write the accounts file atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(accounts, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


class MedaiAuthenticator(NativeAuthenticator):
    accounts_file = Unicode(
        "", config=True, help="JSON file of username -> bcrypt hash, loaded into the hub database."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._accounts_mtime: float | None = None
        self.sync_accounts()

    def sync_accounts(self) -> None:
        if not self.accounts_file:
            return
        path = Path(self.accounts_file)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self._accounts_mtime:
            return
        # A hash is applied once: a user who later changes their password on the hub's
        # change-password page keeps it until the instructor sets a new one in the file.
        applied_path = path.with_name(path.name + ".applied")
        applied = read_accounts(applied_path)
        allowed = set(self.allowed_users)
        for name, pw_hash in read_accounts(path).items():
            if name not in allowed:
                self.log.warning("accounts file: %s is not in the course; ignored", name)
                continue
            info = UserInfo.find(self.db, name)
            if info is None:
                self.db.add(UserInfo(username=name, password=pw_hash.encode(), is_authorized=True))
            elif applied.get(name) != pw_hash:
                info.password = pw_hash.encode()
                info.is_authorized = True
            else:
                continue
            applied[name] = pw_hash
            self.log.info("account %s: password set from %s", name, path)
        self.db.commit()
        write_accounts(applied_path, applied)
        self._accounts_mtime = mtime

    async def authenticate(self, handler, data):
        self.sync_accounts()
        return await super().authenticate(handler, data)
