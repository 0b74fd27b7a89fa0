"""Reaching the mesh: the URLs of its accounts and one way to connect to them (monitoring endpoints are
`natsmesh.observe.monitor`).

Every connection natsmesh opens goes through `connect`, so a mesh that is not up is always reported the same
way: what could not be reached, where, why, and what to check.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Any, Self

import nats
import nats.errors
from nats.aio.client import Client, RawCredentials
from nats.js import JetStreamContext

from natsmesh.errors import NotHeldError, NotRunningError, UnknownDomainError
from natsmesh.local.certs import client_context
from natsmesh.local.secrets import load_credentials
from natsmesh.model.identities import Credentials, user_url
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster
from natsmesh.model.users import inbox_prefix
from natsmesh.render.trust import Login, realise


def signed_in(mesh: Mesh, login: Login, host: str, port: int) -> tuple[str, dict[str, Any]]:
    """The URL of HOST:PORT and the `nats.connect` options that sign in with LOGIN (a password in the URL, an
    nkey seed, or a creds file's text)."""
    if login.password:
        return user_url(mesh.scheme, login.user, login.password, host, port), {}
    plain = f"{mesh.scheme}://{host}:{port}"
    if login.nkey_seed:
        return plain, {"nkeys_seed_str": login.nkey_seed}
    return plain, {"user_credentials": RawCredentials(login.creds)}


def system_urls(mesh: Mesh, creds: Credentials, cluster: Cluster | None = None) -> list[str]:
    """System-account URLs at every server of CLUSTER (default: the hub); nats-py tries them in turn."""
    cluster = cluster or mesh.hub
    return [user_url(mesh.scheme, *creds.system(cluster.name), n.host, n.client_port) for n in cluster.nodes]


def data_urls(mesh: Mesh, creds: Credentials, domain: str) -> list[str]:
    """Data-account URLs at every server of DOMAIN's own cluster."""
    nodes = cluster_of(mesh, domain).nodes
    return [user_url(mesh.scheme, *creds.client(domain), n.host, n.client_port) for n in nodes]


def cluster_of(mesh: Mesh, domain: str) -> Cluster:
    """The cluster of DOMAIN; `UnknownDomainError` naming the mesh's domains."""
    try:
        return mesh.domain(domain)
    except KeyError:
        known = ", ".join(c.name for c in mesh.clusters)
        raise UnknownDomainError(f"mesh {mesh.name!r} has no domain {domain!r} (domains: {known})") from None


async def _quiet(exc: Exception) -> None:
    """What goes wrong on a connection surfaces as the exception of the call it breaks; nothing to print."""


async def connect(mesh: Mesh, servers: list[str], cluster: Cluster, what: str, **options: Any) -> Client:
    """A connection to one of SERVERS (of CLUSTER) or `NotRunningError` saying that WHAT could not be reached."""
    options.setdefault("error_cb", _quiet)  # nats-py's default prints a traceback for every server it tries
    try:
        return await nats.connect(servers=servers, tls=client_context(mesh), **options)
    except Exception as exc:  # nats-py raises several kinds; all mean "not reachable"
        hosts = {n.host for n in cluster.nodes}
        ports = ", ".join(str(n.client_port) for n in cluster.nodes)
        at = (
            f"{hosts.pop()}:{ports}"
            if len(hosts) == 1
            else ", ".join(f"{n.host}:{n.client_port}" for n in cluster.nodes)
        )
        raise NotRunningError(
            f"cannot reach {what} of mesh {mesh.name!r} ({at}): {exc or type(exc).__name__}; "
            "is it up (`natsmesh status`)?"
        ) from None


async def connect_system(
    mesh: Mesh, creds: Credentials, timeout: float = 2.0, cluster: Cluster | None = None
) -> Client:
    """A system-account connection at CLUSTER (default: the hub), for one round of requests: with the cluster's
    system nkey where these credentials hold it (checked in microseconds; a password costs the server a bcrypt
    check), else, or if the servers refuse the key, with the system user's password.

    The servers are tried one at a time, in random order, each for at most a second: a stopped (SIGSTOPped,
    half-open) server accepts the TCP connection and never sends its INFO, and nats-py gives up on the first
    server that fails when it may not reconnect, so one such node made its whole cluster unobservable."""
    cluster = cluster or mesh.hub
    what = f"the system account at {'its hub' if cluster is mesh.hub else f'cluster {cluster.name}'}"
    options: dict[str, Any] = {
        "connect_timeout": min(timeout, 1.0),
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.05,
        "name": "natsmesh-observe",
        "error_cb": _quiet,
    }
    logins = realise(mesh, creds).logins("system", cluster.name)
    nodes = random.sample(list(cluster.nodes), len(cluster.nodes))
    last: BaseException | None = None
    for n in nodes:
        for login in logins:
            url, auth = signed_in(mesh, login, n.host, n.client_port)
            try:
                return await nats.connect(servers=[url], tls=client_context(mesh), **options, **auth)
            except Exception as exc:  # nats-py raises several kinds
                last = exc
                if "uthorization" not in str(exc) and not isinstance(exc, nats.errors.AuthorizationError):
                    break  # this server does not answer: the next one (the password would not help)
                # refused: servers started before the key was made (`info` and `render` add missing secrets)
    hosts = ", ".join(f"{n.host}:{n.client_port}" for n in cluster.nodes)
    raise NotRunningError(
        f"cannot reach {what} of mesh {mesh.name!r} ({hosts}): {last or 'no server'}; is it up (`natsmesh status`)?"
    )


async def connect_domain(
    mesh: Mesh, creds: Credentials, domain: str, name: str = "natsmesh", user: ServiceLogin | None = None
) -> Client:
    """A data-account connection to DOMAIN's own servers (it fails over among them); `NotHeldError` if CREDS
    (a party's folder) hold no identity of DOMAIN's. USER: as that user of the domain's own (its creds file)."""
    cluster = cluster_of(mesh, domain)
    if user is not None and domain != user.cluster:
        raise NotHeldError(f"user {user.name} of {user.cluster} reaches its own cluster only, not {domain}'s")
    if user is None and domain not in creds.client_passwords:
        raise NotHeldError(
            f"the folder of {creds.holder} holds no identity of domain {domain!r}: only {creds.holder}'s own "
            f"servers can be reached from it"
        )
    options: dict[str, Any] = {
        "name": f"{name}@{domain}",
        "connect_timeout": 2,
        "max_reconnect_attempts": 5,
        "reconnect_time_wait": 0.2,
        # A frozen server (stopped, half-open link) is left within 16 s, as the servers do, not nats-py's 4 min.
        "ping_interval": 4,
        "max_outstanding_pings": 3,
    }
    what = f"domain {domain!r}"
    trust = realise(mesh, creds)
    # the platform's own identity there first: it alone may write the domain's catalog copy (servers started before
    # the key was made know only the app user until their next reload)
    logins = [*trust.logins("platform", domain), *trust.logins("client", domain)]
    if user is not None:
        logins, options["inbox_prefix"] = [Login(creds=user.creds)], inbox_prefix(user.name)
    for k, login in enumerate(logins):
        signed = [signed_in(mesh, login, n.host, n.client_port) for n in cluster.nodes]
        try:
            return await connect(mesh, [url for url, _ in signed], cluster, what, **options, **signed[0][1])
        except NotRunningError:
            if k == len(logins) - 1:
                raise
    raise NotHeldError(f"these credentials hold no identity of domain {domain!r}")


@dataclass(frozen=True)
class ServiceLogin:
    """A user of a domain's own (`natsmesh user add`): its cluster, name and creds file's text."""

    cluster: str
    name: str
    creds: str = field(repr=False)
    role: str = ""
    streams: tuple[str, ...] = ()

    def may(self, action: str, stream: str) -> bool:
        """Whether its role lets it ACTION ("read" or "publish on") STREAM of its cluster."""
        wanted = "reader" if action == "read" else "producer"
        return self.role == "admin" or (self.role == wanted and stream in self.streams)


class Connections:
    """Data-account connections to the mesh's domains, opened on demand and closed together; with USER, as that
    user of a domain's own, to its cluster only."""

    def __init__(
        self, mesh: Mesh, creds: Credentials | None = None, name: str = "natsmesh", user: ServiceLogin | None = None
    ) -> None:
        self.mesh = mesh
        self.creds = creds or load_credentials(mesh, create=False)
        self.name = name
        self.user = user
        self._conns: dict[str, Client] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for nc in self._conns.values():
            with contextlib.suppress(Exception):
                await nc.close()
        self._conns.clear()

    async def connection(self, domain: str) -> Client:
        if domain not in self._conns or self._conns[domain].is_closed:
            self._conns[domain] = await connect_domain(self.mesh, self.creds, domain, self.name, self.user)
        return self._conns[domain]

    async def jetstream(self, domain: str, **kw: Any) -> JetStreamContext:
        return (await self.connection(domain)).jetstream(**kw)
