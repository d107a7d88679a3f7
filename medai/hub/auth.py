"""Accounts for one server: NativeAuthenticator, with accounts created by the instructor.

NativeAuthenticator keeps bcrypt password hashes in the hub database and gives users a
change-password page. Self sign-up is off: accounts are the course configuration's people, and
their initial passwords come from ``<state>/hub/accounts.json`` (``medai accounts
set-password``, or the random demo passwords of ``medai up --demo``), which this class loads
into NativeAuthenticator's table when the hub starts and again whenever the file changes.

Guessing passwords is limited twice, and a refused attempt never reaches bcrypt:

- **per account** (NativeAuthenticator's ``allowed_failed_logins`` and
  ``seconds_before_next_try``, kept in its ``login_attempts``): after that many wrong passwords
  the account refuses every login, the right password too, until the window has passed since
  the last wrong one (one more wrong one locks it again) or the instructor sets a new password;
- **per client address** (``failed_logins_per_ip`` within ``ip_window_seconds``), across
  accounts, against password spraying. The address is the peer configurable-http-proxy saw
  (the entry it appends to ``X-Forwarded-For``), not tornado's ``remote_ip``, which takes a
  client's own ``X-Real-Ip`` header at its word.

NativeAuthenticator 1.3 alone does not do this: its lockout is off by default, its login page
checks the password again after every failed login (to tell "not authorized yet" apart), so
bcrypt runs even for a locked account, and a locked user reads only "Invalid username or
password". :meth:`MedaiAuthenticator.authenticate` therefore decides itself (every login path
goes through it, the hub's token API included), and :class:`MedaiLoginHandler` shows why a
login was refused (HTTP 429).
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import time
from datetime import datetime
from pathlib import Path

import bcrypt
from jinja2 import ChoiceLoader, FileSystemLoader
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import TEMPLATE_DIR as NATIVE_TEMPLATES
from nativeauthenticator.handlers import ChangePasswordHandler as NativeChangePasswordHandler
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import Integer, Unicode

REFUSAL_ATTR = "medai_login_refusal"  # set on the handler when a login is refused unchecked
MAX_TRACKED = 10_000  # addresses and names kept in memory before old entries are dropped


def read_accounts(path: Path) -> dict[str, str]:
    """``{username: bcrypt hash}`` from an accounts file (missing file: no accounts)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of username -> bcrypt hash")
    return {str(k): str(v) for k, v in data.items()}


def write_accounts(path: Path, accounts: dict) -> None:
    """Write an accounts file (JSON) atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(accounts, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def password_matches(password: str, pw_hash: bytes) -> bool:
    """bcrypt's check; a password bcrypt cannot take (over 72 bytes) matches nothing."""
    try:
        return bcrypt.checkpw(password.encode(), pw_hash)
    except ValueError:
        return False


def client_address(handler) -> str:
    """The address a request came from, as the proxy in front of the hub recorded it."""
    forwarded = handler.request.headers.get("X-Forwarded-For", "")
    last = forwarded.split(",")[-1].strip()
    if last:
        return last
    context = getattr(handler.request.connection, "context", None)
    address = getattr(context, "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return handler.request.remote_ip or "unknown"


def _minutes(seconds: float) -> str:
    n = max(1, math.ceil(seconds / 60))
    return f"{n} minute{'s' if n > 1 else ''}"


class MedaiLoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login page, without its second password check after a failed
    login, and with the reason when a login was refused before any check."""

    _sync_templates = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # NativeAuthenticator adds its templates to the hub's async template environment only;
        # JupyterHub 5 renders a login form's own errors with the sync one.
        if not MedaiLoginHandler._sync_templates:
            env = self.settings.get("jinja2_env_sync")
            if env is not None:
                env.loader = ChoiceLoader([env.loader, FileSystemLoader([NATIVE_TEMPLATES])])
            MedaiLoginHandler._sync_templates = True

    def _render(self, login_error=None, username=None, **kwargs):
        # NativeAuthenticator 1.3's _render takes no keyword arguments, but JupyterHub 5 renders
        # a login form's own errors (an expired form: XSRF) through it with sync=True, so that
        # error page failed with a TypeError. The same page, passing them on.
        return self.render_template(
            "native-login.html",
            next=url_escape(self.get_argument("next", default="")),
            username=username,
            login_error=login_error,
            custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"],
            enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            authenticator_login_url=url_concat(
                self.authenticator.login_url(self.hub.base_url),
                {"next": self.get_argument("next", "")},
            ),
            **kwargs,
        )

    async def post(self):
        data = {}
        for arg in self.request.body_arguments:  # as JupyterHub's own login handler does
            if arg != "_xsrf":
                data[arg] = self.get_argument(arg, strip=arg == "username")
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        refusal = getattr(self, REFUSAL_ATTR, None)
        self.set_status(429 if refusal else 403)
        html = await self._render(
            login_error=refusal or "Invalid username or password.",
            username=data.get("username", "")[:64],
        )
        self.finish(html)


class MedaiChangePasswordHandler(NativeChangePasswordHandler):
    """NativeAuthenticator's change-password page, with its two bcrypt runs (checking the old
    password, hashing the new one) off the event loop, and a wrong old password counted like a
    wrong login: a stolen session cannot be used to guess the password at full speed."""

    @web.authenticated
    async def post(self):
        auth = self.authenticator
        user = await self.get_current_user()
        old = self.get_body_argument("old_password", strip=False)
        new = self.get_body_argument("new_password", strip=False)
        confirmation = self.get_body_argument("new_password_confirmation", strip=False)
        address = client_address(self)
        info = auth.get_user(user.name)
        refusal = auth._ip_refusal(address) or auth._account_refusal(user.name)
        if refusal:
            ok, message = False, refusal
        elif info is None:
            ok, message = False, "This account has no password here; ask your instructor."
        else:
            auth.log.info("checking the password of %r (from %s)", user.name, address)
            pw_hash = bytes(info.password)
            if not await asyncio.to_thread(password_matches, old, pw_hash):
                auth._note_failure(user.name, address)
                ok, message = False, "Your current password was incorrect. Please try again."
            elif new != confirmation:
                ok, message = False, "The new password and its confirmation differ."
            elif not auth.is_password_strong(new):
                ok = False
                message = (
                    f"Choose a password of at least {auth.minimum_password_length} characters "
                    "that is not a common one."
                )
            else:
                new_hash = await asyncio.to_thread(bcrypt.hashpw, new.encode(), bcrypt.gensalt())
                info.password = new_hash
                auth.db.commit()
                ok, message = True, "Your password has been changed successfully!"
        html = await self.render_template(
            "change-password.html",
            user_name=user.name,
            result_message=message,
            alert="alert-success" if ok else "alert-danger",
        )
        self.finish(html)


class MedaiAuthenticator(NativeAuthenticator):
    accounts_file = Unicode(
        "", config=True, help="JSON file of username -> bcrypt hash, loaded into the hub database."
    )
    failed_logins_per_ip = Integer(
        30,
        config=True,
        help="Failed logins from one client address, within ip_window_seconds, after which that "
        "address is refused without a password check (0: no limit).",
    )
    ip_window_seconds = Integer(
        300, config=True, help="The window of failed_logins_per_ip, in seconds."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._accounts_mtime: float | None = None
        self._ip_failures: dict[str, collections.deque[float]] = {}
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
            self.login_attempts.pop(name, None)  # a new password lifts a lock
            self.log.info("account %s: password set from %s", name, path)
        self.db.commit()
        write_accounts(applied_path, applied)
        self._accounts_mtime = mtime

    # -- limits ---------------------------------------------------------------------------

    def _ip_refusal(self, address: str) -> str | None:
        failures = self._ip_failures.get(address)
        if not self.failed_logins_per_ip or not failures:
            return None
        now = time.monotonic()
        while failures and now - failures[0] > self.ip_window_seconds:
            failures.popleft()
        if len(failures) < self.failed_logins_per_ip:
            return None
        wait = self.ip_window_seconds - (now - failures[0])
        return (
            "Too many failed logins from your network address. "
            f"Wait {_minutes(wait)} before you try again."
        )

    def _account_refusal(self, username: str) -> str | None:
        if not self.allowed_failed_logins or not self.is_blocked(username):
            return None
        since = (datetime.now() - self.login_attempts[username]["time"]).total_seconds()
        return (
            f"Too many wrong passwords for {username[:64]}: the account is locked for "
            f"{_minutes(self.seconds_before_next_try - since)}. Wait, or ask your instructor "
            "to set a new password."
        )

    def _note_failure(self, username: str, address: str) -> None:
        self.add_login_attempt(username)  # NativeAuthenticator's per-account counter
        self._ip_failures.setdefault(address, collections.deque()).append(time.monotonic())
        for table in (self.login_attempts, self._ip_failures):
            while len(table) > MAX_TRACKED:  # a flood of made-up names: forget the oldest
                table.pop(next(iter(table)))

    # -- the one place a password is checked ----------------------------------------------

    async def authenticate(self, handler, data):
        self.sync_accounts()
        data = data if isinstance(data, dict) else {}
        username = self.normalize_username(str(data.get("username") or ""))
        password = str(data.get("password") or "")
        if not username or not password:
            return None
        address = client_address(handler)
        ip_refusal = self._ip_refusal(address)
        account_refusal = None if ip_refusal else self._account_refusal(username)
        refusal = ip_refusal or account_refusal
        if refusal:
            self.log.warning(
                "login of %r from %s refused unchecked: %s", username, address, refusal
            )
            if account_refusal:  # hammering a locked account counts against the address too
                self._ip_failures.setdefault(address, collections.deque()).append(time.monotonic())
            setattr(handler, REFUSAL_ATTR, refusal)
            return None
        user = self.get_user(username)
        if user is None:
            self._note_failure(username, address)
            return None
        self.log.info("checking the password of %r (from %s)", username, address)
        # bcrypt takes a tenth of a second of CPU by design: in a worker thread, so the hub
        # keeps serving everyone else while a class logs in (NativeAuthenticator checks on
        # the event loop). The hash is read here, on the loop that owns the database session.
        pw_hash = bytes(user.password)
        valid = [user.is_authorized, await asyncio.to_thread(password_matches, password, pw_hash)]
        if user.has_2fa:
            valid.append(user.is_valid_token(data.get("2fa")))
        if all(valid):
            self.successful_login(username)
            return username
        self._note_failure(username, address)
        return None

    def get_handlers(self, app):
        ours = {
            NativeLoginHandler: MedaiLoginHandler,
            NativeChangePasswordHandler: MedaiChangePasswordHandler,
        }
        return [(path, ours.get(handler, handler)) for path, handler in super().get_handlers(app)]
