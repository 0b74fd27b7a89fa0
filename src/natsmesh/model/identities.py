"""Who the mesh's servers and clients are, and the URLs that carry those identities. Pure.

Every mesh has a system user, a client user per domain (valid only on that domain's own servers) and a leaf-link
user per leaf domain (accepted at the hub for leafnode connections only). Where they come from (fixed in the
spec, or generated and stored) is `natsmesh.local.secrets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

SYSTEM_ACCOUNT = "SYS"
LINK_USER_PREFIX = "link-"


def account_of(domain: str) -> str:
    """The NATS account that holds DOMAIN's data: one account per domain, named after it."""
    return domain


def user_url(scheme: str, user: str, password: str, host: str, port: int) -> str:
    """`scheme://user:password@host:port` with both credentials quoted for a URL."""
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"


@dataclass(frozen=True)
class Credentials:
    """Every identity of a mesh: the system user, each domain's client user, each leaf domain's link user."""

    system_user: str
    system_password: str
    client_user: str
    client_passwords: dict[str, str] = field(hash=False)
    link_passwords: dict[str, str] = field(hash=False)

    def system(self) -> tuple[str, str]:
        """The system account's identity."""
        return self.system_user, self.system_password

    def client(self, domain: str) -> tuple[str, str]:
        """DOMAIN's client identity (data account of that domain, valid only on its own servers)."""
        return self.client_user, self.client_passwords[domain]

    def link(self, domain: str) -> tuple[str, str]:
        """The identity DOMAIN's leaf nodes use at the hub (leafnode connections only)."""
        return f"{LINK_USER_PREFIX}{domain}", self.link_passwords[domain]

    def secrets(self) -> list[str]:
        return [self.system_password, *self.client_passwords.values(), *self.link_passwords.values()]
