"""What the holder of one party's folder can try, with everything in it, against a mesh's listeners: client,
route, leafnode and monitoring HTTP of every other party's servers, and system and JetStream requests through its
own servers. Each probe says how it went; "connected", "joined", "linked", "shown" and "ok: ..." are breaches
where another party's listener or data is concerned.

Used by tests/test_folder_holder.py on one machine, and run as a script on a domain's own test host by
tests/test_multihost.py: `python tests/probes.py FOLDER` prints the whole matrix as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import socket
import ssl
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

TIMEOUT = 0.5
BREACHES = ("connected", "joined", "linked", "shown", "ok")
MONITOR_PATHS = ("/varz", "/connz?auth=true&subs=1", "/routez", "/leafz?subs=1", "/accountz", "/jsz?accounts=1")
CONSUMER_VERBS: dict[str, dict[str, Any] | None] = {
    "CREATE": {"filter_subject": "x", "deliver_subject": "stolen.here"},  # an update of an existing consumer
    "DELETE": None,
    "PAUSE": {"pause_until": "2099-01-01T00:00:00Z"},
    "RESET": {"seq": 1},
}


@dataclass
class Folder:
    """Everything one party holds: its rendered folder, read back."""

    party: str
    path: Path
    secrets: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> Folder:
        secrets = json.loads((path / "secrets.json").read_text())
        return cls(secrets["party"], path, secrets)

    @property
    def passwords(self) -> list[tuple[str, str, str]]:
        """(what, user, password) for every password identity in the folder."""
        return [(k, v["user"], v["password"]) for k, v in self.secrets.items() if isinstance(v, dict) and "user" in v]

    @property
    def seeds(self) -> list[tuple[str, str]]:
        return [(k, v["seed"]) for k, v in self.secrets.items() if isinstance(v, dict) and "seed" in v]

    def tls(self, name: str) -> Path:
        return self.path / "tls" / name

    def jwt_users(self, scratch: Path) -> list[tuple[str, Path]]:
        """(what, creds file) for every user JWT the folder holds or can sign (operator mode): its link's creds,
        and users its account's signing key mints (one saying nothing, one asking for a client's connection and
        every subject)."""
        from natsmesh.local.secrets import new_nkey
        from natsmesh.model import jwt

        link = self.path / "link.creds"
        if not link.is_file():
            return []
        out = [("link creds", link)]
        token = link.read_text().split("-----BEGIN NATS USER JWT-----")[1].split("------END")[0].strip()
        account = str(jwt.decode(token)["nats"]["issuer_account"])
        everything = jwt.Permissions(pub=jwt.Permission(allow=(">",)), sub=jwt.Permission(allow=(">",)))
        for name, key in (self.secrets.get("trust_keys") or {}).items():
            if not name.startswith("account-signing:"):
                continue
            for shape, extra in (
                ("minted user", {"subs": 0, "data": 0, "payload": 0}),
                ("minted client", {"allowed_connection_types": ("STANDARD",), "permissions": everything}),
            ):
                user = new_nkey()
                claims = jwt.UserClaims(subject=user.public, issuer_account=account, **extra)  # type: ignore[arg-type]
                path = scratch / f"{self.party}-{shape.replace(' ', '-')}.creds"
                path.write_text(jwt.creds_file(jwt.encode(claims, key["seed"], int(time.time())), user.seed))
                out.append((shape, path))
        return out

    def context(self, cert: str | None = None) -> ssl.SSLContext:
        """A TLS context trusting the folder's CA, presenting CERT (a certificate of the folder) if given."""
        ctx = ssl.create_default_context(cafile=str(self.tls("ca.pem")))
        if cert is not None:
            ctx.load_cert_chain(self.tls(f"{cert}.pem"), self.tls(f"{cert}-key.pem"))
        return ctx


def is_breach(outcome: str) -> bool:
    return outcome.split(":", 1)[0] in BREACHES


async def client_probe(url: str, ctx: ssl.SSLContext, **auth: Any) -> str:
    """Connect with AUTH and say how it went: `connected` (a breach where not expected) or why not."""
    try:
        nc = await nats.connect(
            url,
            tls=ctx,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would be "forever" to nats-py
            reconnect_time_wait=0.05,
            connect_timeout=2,
            **auth,
        )
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    await nc.close()
    return "connected"


def route_probe(host: str, port: int, ctx: ssl.SSLContext | None, user: str, password: str, cluster: str) -> str:
    """Speak the route protocol to HOST:PORT as a would-be member: CONNECT with USER/PASSWORD, PING. With CTX
    (a TLS mesh) the TLS handshake comes first, as nats-server's route listeners want it, then its INFO."""
    try:
        raw = socket.create_connection((host, port), timeout=3)
    except OSError as exc:
        return f"unreachable: {exc}"
    with raw:
        try:
            sock: Any = raw if ctx is None else ctx.wrap_socket(raw, server_hostname=host)
            sock.recv(4096)  # its INFO
            connect = {"user": user, "pass": password, "name": "rogue", "cluster": cluster, "tls_required": True}
            sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
            answer = b""
            while b"PONG" not in answer and b"-ERR" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except (OSError, ssl.SSLError) as exc:
            return f"refused: {exc}"
    return "joined" if b"PONG" in answer and b"-ERR" not in answer else f"refused: {answer[:80]!r}"


def leaf_probes(
    host: str, port: int, ctx: ssl.SSLContext, seed: str | None, most: int, user: str = "", password: str = ""
) -> list[str]:
    """Open up to MOST leafnode connections to HOST:PORT at once, each signing the server's nonce with SEED (or
    signing in as USER with PASSWORD), holding every one that links open until the first refusal; `linked` or
    why not, for each one tried."""
    import nkeys

    kp = nkeys.from_seed(seed.encode()) if seed else None

    def auth(nonce: str) -> dict[str, str]:
        if kp is None:
            return {"user": user, "pass": password}
        sig = base64.urlsafe_b64encode(kp.sign(nonce.encode())).decode().rstrip("=")
        return {"nkey": kp.public_key.decode(), "sig": sig}

    outcomes: list[str] = []
    with contextlib.ExitStack() as held:
        for _ in range(most):
            try:
                raw = held.enter_context(socket.create_connection((host, port), timeout=3))
                info = raw.recv(4096)
                sock = ctx.wrap_socket(raw, server_hostname=host) if b"tls_required" in info else raw
                held.callback(sock.close)
                nonce = json.loads(info.decode().split(" ", 1)[1]).get("nonce", "")
                connect = {**auth(nonce), "name": "rogue-leaf", "tls_required": True}
                sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
                answer = b""
                deadline = time.monotonic() + 3
                # its verdict on CONNECT (an -ERR) comes before its PONG: a PONG means linked
                while b"-ERR" not in answer and b"PONG" not in answer and time.monotonic() < deadline:
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    answer += chunk
            except (OSError, ssl.SSLError, ValueError) as exc:
                outcomes.append(f"refused: {exc}")
                break
            if b"-ERR" in answer or not answer:
                outcomes.append(f"refused: {answer[:120]!r}")
                break
            outcomes.append("linked")
    return outcomes


def monitor_probe(host: str, port: int, secrets: set[str]) -> str:
    """Every monitoring page at HOST:PORT: `unreachable`, `no secret`, or `shown: PATH` if one shows a secret."""
    for path in MONITOR_PATHS:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2) as resp:
                text = resp.read().decode(errors="replace")
        except OSError as exc:
            return f"unreachable: {exc}"
        if any(s in text for s in secrets):
            return f"shown: {path}"
    return "no secret"


async def attempt(nc: Client, subject: str, body: Any = None) -> str:
    """One request: `ok: ...` if something answered as if it was done, else what stopped it."""
    try:
        msg = await nc.request(subject, json.dumps(body or {}).encode(), timeout=TIMEOUT)
    except nats.errors.NoRespondersError:
        return "no responders"
    except nats.errors.TimeoutError:
        return "timeout"
    reply = json.loads(msg.data or b"{}")
    if isinstance(reply, dict) and "error" in reply:
        return f"error: {reply['error'].get('description')}"
    if isinstance(reply, dict) and reply.get("initiated") is False:
        return "nothing done"  # e.g. a purge of an account this cluster does not hold
    return f"ok: {msg.data[:120]!r}"


async def answers(nc: Client, subject: str) -> set[str]:
    """The servers that answer one system ping on NC."""
    names: set[str] = set()

    async def on(msg: Any) -> None:
        names.add(json.loads(msg.data)["server"]["name"])

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on)
    await nc.publish(subject, b"{}", reply=inbox)
    await asyncio.sleep(1.0)
    await sub.unsubscribe()
    return names


async def matrix(path: Path) -> dict[str, Any]:
    """Everything in the folder at PATH against every listener of every other party of its mesh, and the system
    and JetStream requests its own servers let it send: `{"outcomes": {probe: outcome}, "own_pings": [...]}`."""
    from natsmesh.local.folder import load_folder

    mesh, folder = load_folder(path), Folder.read(path)
    assert mesh.tls, "the matrix tries a folder's TLS keys too: it runs against a TLS mesh"
    own = mesh.domain(folder.party)
    secrets = {v for _, _, v in folder.passwords} | {s for _, s in folder.seeds}
    outcomes = _Timed()
    scheme = mesh.scheme
    scratch = Path(tempfile.mkdtemp(prefix="probes-"))
    jwt_users = folder.jwt_users(scratch)
    for other in (c for c in mesh.clusters if c.name != folder.party):
        for node in other.nodes:
            where = f"{other.name}/{node.name}"
            url = f"{scheme}://{node.host}:{node.client_port}"
            ctx = folder.context()
            for what, user, password in folder.passwords:
                outcomes[f"client {where} {what}"] = await client_probe(url, ctx, user=user, password=password)
            for what, seed in folder.seeds:
                outcomes[f"client {where} {what}"] = await client_probe(url, ctx, nkeys_seed_str=seed)
            for what, creds in jwt_users:
                outcomes[f"client {where} {what}"] = await client_probe(url, ctx, user_credentials=str(creds))
            if node.cluster_port is not None:
                ctx = folder.context(cert=own.nodes[0].name)  # its own node's certificate, which routes require
                for what, user, password in folder.passwords:
                    outcomes[f"route {where} {what}"] = await asyncio.to_thread(
                        route_probe, node.host, node.cluster_port, ctx, user, password, other.name
                    )
            if node.leafnode_port is not None and not own.is_hub:
                ctx = folder.context(cert=f"{folder.party}-link")
                port = node.leafnode_port
                # its own seeds are its own links at the hub, the one thing it may open there (within its limit)
                for what, user, password in folder.passwords:
                    tried = await asyncio.to_thread(leaf_probes, node.host, port, ctx, None, 1, user, password)
                    outcomes[f"leaf {where} {what}"] = tried[0]
            outcomes[f"monitor {where}"] = await asyncio.to_thread(monitor_probe, node.host, node.http_port, secrets)
    nc = await own_connection(mesh, folder, "system")
    app = await own_connection(mesh, folder, "client")
    try:
        pings = await answers(nc, "$SYS.REQ.SERVER.PING.CONNZ")
        for other in (c for c in mesh.clusters if c.name != folder.party):
            q = other.name
            tries: dict[str, tuple[Client, str, Any]] = {
                "account purge": (nc, f"$JS.{q}.API.ACCOUNT.PURGE.{q}", None),
                "server remove": (nc, f"$JS.{q}.API.SERVER.REMOVE", {"peer": other.nodes[0].name}),
                "meta stepdown": (nc, f"$JS.{q}.API.META.LEADER.STEPDOWN", None),
                "stream list": (app, f"$JS.{q}.API.STREAM.LIST", None),
                # its access requests and answers, and at the hub the audit trail: read, purge, delete
                **{
                    f"{stream} {verb}": (app, f"$JS.{q}.API.STREAM.{verb}.{stream}", body)
                    for stream in (("natsmesh_audit",) if other.is_hub else ("natsmesh_access",))
                    for verb, body in (("MSG.GET", {"seq": 1}), ("PURGE", None), ("DELETE", None))
                },
            }
            for share in (s for s in mesh.shares if s.owner == q):
                verbs = CONSUMER_VERBS
                if share.taker == folder.party:  # its own copy's consumer it may reset, which replays its own copy
                    verbs = {v: b for v, b in CONSUMER_VERBS.items() if v != "RESET"}
                for verb, body in verbs.items():
                    config = {"stream_name": share.stream, "config": {"name": share.consumer, **(body or {})}}
                    tries[f"{share.stream}/{share.consumer} {verb}"] = (
                        app,
                        f"$JS.{q}.API.CONSUMER.{verb}.{share.stream}.{share.consumer}",
                        config if verb == "CREATE" else body,
                    )
            for action, (conn, subject, body) in tries.items():
                outcomes[f"request {q} {action}"] = await attempt(conn, subject, body)
    finally:
        await app.close()
        await nc.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"party": folder.party, "outcomes": dict(outcomes), "own_pings": sorted(pings), "seconds": outcomes.seconds}


async def own_connection(mesh: Any, folder: Folder, role: str) -> Client:
    """A connection to the folder's own servers as its ROLE, signed in as the mesh's trust says (a password, an
    nkey or, at an operator-mode hub, a user JWT the folder's keys signed)."""
    from natsmesh.local.secrets import load_credentials
    from natsmesh.observe.connect import signed_in
    from natsmesh.render.trust import realise

    node = mesh.domain(folder.party).nodes[0]
    held = load_credentials(mesh, create=False).party(folder.party)  # only what the folder holds
    login = realise(mesh, held).logins(role, folder.party)[0]
    url, options = signed_in(mesh, login, node.host, node.client_port)
    return await nats.connect(url, tls=folder.context(), allow_reconnect=False, connect_timeout=3, **options)


class _Timed(dict[str, str]):
    """Outcomes by probe, and the seconds spent per kind of probe (the time since the previous outcome)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def __setitem__(self, key: str, value: str) -> None:
        now, kind = time.monotonic(), key.split(" ", 1)[0]
        self.seconds[kind] = round(self.seconds.get(kind, 0.0) + now - self._last, 2)
        self._last = now
        super().__setitem__(key, value)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(matrix(Path(sys.argv[1])))))
