"""Origins: the hub, every user's server and every service each on its own web origin.

A browser lets script read, and send cookies to, only what shares its origin (scheme, host,
port). With every server behind one host (``http://HOST:8000/user/alice/``,
``.../services/<course>/``), a page a trainee controls runs with the rights of whoever opens it:
an instructor who opens it hands the trainee their hub session. JupyterHub's
``subdomain_host`` moves each server and service onto a host of its own, and this module names
those hosts (with JupyterHub's own ``subdomain_hook_idna``, so the names always agree):

- the hub: ``http://localhost:8000`` (by default; ``medai up --public-host NAME`` on a LAN);
- a user's server: ``http://alice.localhost:8000/user/alice/``;
- a service: ``http://<course>--service.localhost:8000/services/<course>/``.

``*.localhost`` is loopback by definition (RFC 6761) and Chromium and Firefox resolve it so
without DNS. The operating system's resolver usually does not, so Python clients on the hub
machine connect to the proxy's address and send the host in the Host header: the launcher's
start check does so itself, the test and benchmark clients through
:class:`medai.testing.hub.LoopbackTransport`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from jupyterhub.utils import subdomain_hook_idna

# A DNS name of one or more labels, each 1-63 letters, digits or hyphens (not at either end).
_DNS_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


class OriginsError(ValueError):
    """A public host that cannot carry per-user subdomains; the message says what to use."""


def check_public_host(host: str) -> str:
    """Validate the name users type to reach the hub; return it in lower case.

    It must be a DNS name whose every subdomain resolves to this machine: ``localhost``
    (built in) or a name with a wildcard DNS record (``*.medai.lan``). An IP address cannot
    have subdomains, so it is refused with a hint.
    """
    name = host.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise OriginsError(
            f"--public-host {host}: an IP address has no subdomains, and every user's server "
            "gets a subdomain of its own. Give a DNS name whose wildcard points at this "
            "machine (e.g. medai.lan with a DNS record *.medai.lan -> this address), "
            "see the README's classroom LAN section"
        )
    if "://" in name or "/" in name or ":" in name:
        raise OriginsError(
            f"--public-host {host}: give only the host name (e.g. medai.lan), "
            "without scheme, port or path; the port is --port"
        )
    if not _DNS_NAME.match(name):
        raise OriginsError(
            f"--public-host {host}: not a DNS name (letters, digits, hyphens and dots only, "
            "e.g. medai.lan)"
        )
    return name


@dataclass(frozen=True)
class Origins:
    """Public origins of one hub: ``host`` and its subdomains, on ``port``."""

    host: str = "localhost"
    port: int = 8000
    scheme: str = "http"

    def _origin(self, hostname: str) -> str:
        default = {"http": 80, "https": 443}[self.scheme]
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{hostname}{port}"

    @property
    def hub(self) -> str:
        """The hub's origin (JupyterHub's ``subdomain_host``): login, home, token pages, API."""
        return self._origin(self.host)

    def user_host(self, name: str) -> str:
        return subdomain_hook_idna(name, self.host, kind="user")

    def service_host(self, name: str) -> str:
        return subdomain_hook_idna(name, self.host, kind="service")

    def user(self, name: str) -> str:
        """Origin of ``name``'s server (its pages are under ``/user/<name>/`` there)."""
        return self._origin(self.user_host(name))

    def service(self, name: str) -> str:
        """Origin of the service ``name`` (its pages are under ``/services/<name>/`` there)."""
        return self._origin(self.service_host(name))

    def server_url(self, name: str) -> str:
        return f"{self.user(name)}/user/{name}"

    def service_url(self, name: str) -> str:
        return f"{self.service(name)}/services/{name}"

    def covers(self, hostname: str) -> bool:
        """Is ``hostname`` the hub's host or one of its subdomains?"""
        h = hostname.lower().rstrip(".")
        return h == self.host or h.endswith("." + self.host)
