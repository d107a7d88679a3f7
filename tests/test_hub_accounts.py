"""Accounts, attacked over HTTP on a real hub: password guessing, spraying, demo passwords.

The hub here is this module's own (locking an account on the shared ``running_hub`` would
break the other tests). Each attack runs from its own loopback source address (127.0.0.N), so
the per-address limit of one test does not touch another. Whether bcrypt ran is read from the
hub log: the authenticator logs "checking the password of 'NAME'" right before it checks one.
"""

from __future__ import annotations

import json
import re
import stat

import bcrypt
import httpx
import pytest
import yaml

from medai.config import parse_config
from medai.hub.hubconfig import (
    ACCOUNT_FAILED_LOGINS,
    ADDRESS_FAILED_LOGINS,
)
from medai.hub.launcher import (
    ensure_demo_accounts,
    free_port,
    legacy_demo_password,
    prepare_state,
    set_password,
    start_hub,
)
from medai.testing.hub import _mirror_parent_domain_cookies

TRAINEES = ["carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"]


def course(tmp_path):
    data = {
        "course": {"id": "acct", "title": "Accounts"},
        "people": {"instructors": ["teacher"], "trainees": TRAINEES},
    }
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_config(data)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accounts")
    path, cfg = course(tmp)
    hub, passwords, _ = start_hub(
        cfg, config_path=path, state=tmp / "state", port=free_port(), demo=True, echo=print
    )
    hub.passwords = passwords
    try:
        yield hub
    finally:
        hub.stop()


def client(hub, source: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (any 127.0.0.N is loopback)."""
    return httpx.Client(
        base_url=hub.url, transport=httpx.HTTPTransport(local_address=source), timeout=60
    )


def attempt(c: httpx.Client, user: str, password: str, headers=None) -> httpx.Response:
    """One try on the login form, as a browser sends it (``headers`` on both requests: the
    hub binds the form's XSRF token to the client address it believes in)."""
    c.cookies.clear()
    c.get("/hub/login", headers=headers or {})
    xsrf = c.cookies.get("_xsrf")
    return c.post(
        "/hub/login",
        data={"username": user, "password": password, "_xsrf": xsrf},
        headers=headers or {},
        follow_redirects=False,
    )


def checks(hub, user: str) -> int:
    """How often the hub has checked ``user``'s password (bcrypt), from its log."""
    return hub.log.read_text(errors="replace").count(f"checking the password of {user!r}")


@pytest.mark.slow
def test_the_11th_attempt_is_refused_without_checking_the_password(hub):
    c = client(hub, "127.0.0.2")
    for i in range(ACCOUNT_FAILED_LOGINS):
        r = attempt(c, "carol", f"wrong-guess-{i}")
        assert r.status_code == 403 and "Invalid username or password." in r.text
    assert checks(hub, "carol") == ACCOUNT_FAILED_LOGINS
    # the 11th, with the right password: refused, and the page says why
    r = attempt(c, "carol", hub.passwords["carol"])
    assert r.status_code == 429
    assert "Too many wrong passwords for carol: the account is locked for 10 minutes" in r.text
    # the hub's token API takes a password too: it works for dave, not for locked carol
    other = client(hub, "127.0.0.3")
    r = other.post(
        "/hub/api/users/dave/tokens",
        json={"auth": {"username": "dave", "password": hub.passwords["dave"]}},
    )
    assert r.status_code in (200, 201), r.text
    assert checks(hub, "dave") == 1
    r = c.post(
        "/hub/api/users/carol/tokens",
        json={"auth": {"username": "carol", "password": hub.passwords["carol"]}},
    )
    assert r.status_code == 403
    # neither refused attempt reached bcrypt
    assert checks(hub, "carol") == ACCOUNT_FAILED_LOGINS
    # the lock is carol's only: dave logs in on the form
    assert attempt(other, "dave", hub.passwords["dave"]).status_code == 302


@pytest.mark.slow
def test_password_spraying_from_one_address_is_stopped_even_with_forged_headers(hub):
    """Spraying: a few guesses at many accounts (fewer than a lock each). The attacker sends a
    new X-Forwarded-For and X-Real-Ip with every try; tornado's remote_ip believes X-Real-Ip."""
    c = client(hub, "127.0.0.4")
    targets = ["erin", "gina", "nosuchuser", "teacher"]
    for i in range(ADDRESS_FAILED_LOGINS):
        forged = {"X-Forwarded-For": f"10.0.{i}.1", "X-Real-Ip": f"10.0.{i}.1"}
        r = attempt(c, targets[i % len(targets)], f"Password{i}!", headers=forged)
        assert r.status_code == 403, (i, r.status_code)
    before = checks(hub, "frank")
    r = attempt(c, "frank", hub.passwords["frank"], headers={"X-Real-Ip": "10.99.0.1"})
    assert r.status_code == 429
    assert "Too many failed logins from your network address" in r.text
    assert checks(hub, "frank") == before  # refused before any password check
    # another address is not affected
    assert attempt(client(hub, "127.0.0.5"), "frank", hub.passwords["frank"]).status_code == 302


@pytest.mark.slow
def test_an_expired_login_form_says_so(hub):
    """JupyterHub 5 renders this error through the authenticator's login page; with
    NativeAuthenticator's own page that failed (TypeError in write_error)."""
    c = client(hub, "127.0.0.7")
    c.get("/hub/login")
    r = c.post("/hub/login", data={"username": "erin", "password": "x", "_xsrf": "stale"})
    assert r.status_code == 403
    assert "Login form invalid or expired. Try again." in r.text


@pytest.mark.slow
def test_a_new_password_from_the_instructor_lifts_the_lock(hub):
    c = client(hub, "127.0.0.6")
    for i in range(ACCOUNT_FAILED_LOGINS):
        attempt(c, "hank", f"wrong-{i}")
    assert attempt(c, "hank", hub.passwords["hank"]).status_code == 429
    set_password(hub.layout, "hank", "a-new-password-for-hank")  # medai accounts set-password
    assert attempt(c, "hank", "a-new-password-for-hank").status_code == 302


def change_password(c: httpx.Client, old: str, new: str) -> str:
    """The change-password form, as a logged-in browser posts it; the page's message."""
    _mirror_parent_domain_cookies(c.cookies.jar, "localhost")  # a browser sends the session id
    form = c.get("/hub/change-password").text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
    r = c.post(
        "/hub/change-password",
        data={
            "old_password": old,
            "new_password": new,
            "new_password_confirmation": new,
            "_xsrf": xsrf,
        },
    )
    assert r.status_code == 200, r.text[:500]
    return r.text


@pytest.mark.slow
def test_a_trainee_changes_their_password_and_only_the_new_one_works(hub):
    c = client(hub, "127.0.0.8")
    assert attempt(c, "judy", hub.passwords["judy"]).status_code == 302
    assert "Your current password was incorrect" in change_password(c, "not-it", "judy-new-pass-1")
    page = change_password(c, hub.passwords["judy"], "judy-new-pass-1")
    assert "Your password has been changed successfully!" in page
    other = client(hub, "127.0.0.9")
    assert attempt(other, "judy", hub.passwords["judy"]).status_code == 403
    assert attempt(other, "judy", "judy-new-pass-1").status_code == 302


@pytest.mark.slow
def test_guessing_the_old_password_with_a_stolen_session_locks_the_account(hub):
    """Someone with ivan's session (an unlocked laptop) guesses at his password through the
    change-password form: it counts like wrong logins, and then stops checking."""
    c = client(hub, "127.0.0.10")
    assert attempt(c, "ivan", hub.passwords["ivan"]).status_code == 302
    before = checks(hub, "ivan")
    for i in range(ACCOUNT_FAILED_LOGINS):
        assert "Your current password was incorrect" in change_password(c, f"guess-{i}", "x" * 12)
    assert checks(hub, "ivan") == before + ACCOUNT_FAILED_LOGINS
    page = change_password(c, hub.passwords["ivan"], "ivan-new-pass-1")
    assert "Too many wrong passwords for ivan" in page
    assert checks(hub, "ivan") == before + ACCOUNT_FAILED_LOGINS  # refused unchecked
    assert attempt(client(hub, "127.0.0.11"), "ivan", hub.passwords["ivan"]).status_code == 429


@pytest.mark.slow
@pytest.mark.browser
def test_a_locked_account_says_so_on_the_login_page(hub, browser, artifacts_dir):
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        for i in range(ACCOUNT_FAILED_LOGINS + 1):
            page.goto(hub.url + "/hub/login")
            page.fill("#username_input", "gina")
            last = i == ACCOUNT_FAILED_LOGINS
            page.fill("#password_input", hub.passwords["gina"] if last else f"nope-{i}")
            page.click("#login_submit")
            page.wait_for_selector(".login_error")
        message = page.inner_text(".login_error")
        page.screenshot(path=artifacts_dir / "locked.png")
        assert "the account is locked for 10 minutes" in message
        assert "/hub/login" in page.url
    finally:
        ctx.close()


# --- demo passwords ----------------------------------------------------------------------------


def test_demo_passwords_are_random_kept_private_and_printed_again(tmp_path):
    path, cfg = course(tmp_path)
    a = prepare_state(cfg, tmp_path / "a")
    b = prepare_state(cfg, tmp_path / "b")
    pw_a, pw_b = ensure_demo_accounts(cfg, a), ensure_demo_accounts(cfg, b)
    assert set(pw_a) == set(cfg.people.everyone)
    for user in cfg.people.everyone:
        assert pw_a[user] != pw_b[user]  # one per state folder, not derived from the name
        assert user not in pw_a[user] and "medai-demo" not in pw_a[user]
        assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", pw_a[user])
    assert len(set(pw_a.values())) == len(pw_a)
    assert stat.S_IMODE(a.demo_passwords_file.stat().st_mode) == 0o600
    assert ensure_demo_accounts(cfg, a) == pw_a  # kept: the next `medai up --demo` prints them
    accounts = json.loads(a.accounts_file.read_text())
    assert bcrypt.checkpw(pw_a["dave"].encode(), accounts["dave"].encode())


def test_demo_keeps_the_instructors_passwords_and_replaces_the_old_predictable_ones(tmp_path):
    path, cfg = course(tmp_path)
    layout = prepare_state(cfg, tmp_path / "state")
    set_password(layout, "carol", legacy_demo_password("carol"))  # a state folder from before
    set_password(layout, "teacher", "the-instructors-own")
    shown = ensure_demo_accounts(cfg, layout)
    assert "teacher" not in shown
    accounts = json.loads(layout.accounts_file.read_text())
    assert bcrypt.checkpw(b"the-instructors-own", accounts["teacher"].encode())
    assert not bcrypt.checkpw(legacy_demo_password("carol").encode(), accounts["carol"].encode())
    assert bcrypt.checkpw(shown["carol"].encode(), accounts["carol"].encode())
    set_password(layout, "dave", "set-later-by-the-instructor")
    assert "dave" not in ensure_demo_accounts(cfg, layout)
