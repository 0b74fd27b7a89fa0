"""Should a leaf cluster run in config mode (as it does) or under an operator of its own? Measured, one run.

The same 3-node JetStream cluster (one data account with JetStream, a system account) in two variants, their
rounds alternating:

- config:   users in the configs (bcrypt hashes, cost 6, as natsmesh renders them);
- operator: an operator of the cluster's own, its accounts as JWTs in a `full` resolver (preloaded), users as
            creds files signed by the data account's signing key.

Measured per round:

1. bring-up: the three servers started until each is healthy and sees a meta leader; then their RSS;
2. connect: N connections opened and closed one after another as the data account's user (the server's auth
   check: a bcrypt compare against a signed nonce and a JWT);
3. a new service user: from "issue it" until it connects (config: the configs rewritten with one more bcrypt user
   and every node reloaded; operator: a user JWT signed, nothing sent to any server);
4. that user revoked while connected: from "revoke it" until its connection is closed (config: the configs
   rewritten without it and every node reloaded; operator: the account's JWT with the user revoked pushed to
   the cluster's resolver on `$SYS.REQ.CLAIMS.UPDATE`).

Usage: python benchmarks/bench_leaf_trust.py [--rounds 3] [--connects 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats

from natsmesh.local import binary
from natsmesh.local.secrets import bcrypt_hash, new_nkey
from natsmesh.model import jwt
from natsmesh.observe.monitor import config_load_time, healthz, jsz
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine, rss_bytes
from reporting import machine_line, write_json

NODES = 3
HOST = "127.0.0.1"


async def _quiet(_: Exception) -> None:
    """nats-py prints every connection error by default; a revoked user's is expected here."""


class Cluster:
    """Three servers of one variant in DIR, their configs made by RENDER(users) (user name -> password)."""

    def __init__(self, variant: str, root: Path) -> None:
        self.variant = variant
        self.root = root
        base = free_port_base(3 * NODES)
        self.ports = [(base + 3 * i, base + 3 * i + 1, base + 3 * i + 2) for i in range(NODES)]  # client, route, http
        self.procs: list[subprocess.Popen[bytes]] = []
        self.users: dict[str, str] = {"app": "app-password-" + os.urandom(6).hex()}
        self.issued = int(time.time()) - 1
        if variant == "operator":
            self.operator = new_nkey("operator")
            self.sys_account = new_nkey("account")
            self.data_account = new_nkey("account")
            self.data_signing = new_nkey("account")
            self.sys_user = new_nkey("user")
            self.revoked: dict[str, int] = {}
            self.op_jwt = jwt.encode(
                jwt.OperatorClaims(subject=self.operator.public, name="leaf", system_account=self.sys_account.public),
                self.operator.seed,
                self.issued,
            )
            self.sys_creds = self.creds_for(self.sys_user, self.sys_account, self.sys_account.seed)
        else:
            self.sys_password = "sys-" + os.urandom(6).hex()

    # -- identities ------------------------------------------------------------------------------------------------
    def account_jwt(self, account: Any, name: str, js: bool, issued: int) -> str:
        limits = jwt.AccountLimits(jetstream=jwt.JETSTREAM_UNLIMITED if js else jwt.JetStreamLimits())
        signing = (self.data_signing.public,) if js else ()
        revocations = self.revoked if js else {}
        claims = jwt.AccountClaims(
            subject=account.public, name=name, limits=limits, signing_keys=signing, revocations=revocations
        )
        return jwt.encode(claims, self.operator.seed, issued)

    def creds_for(self, user: Any, account: Any, signer: str) -> Path:
        issuer_account = account.public if jwt.public_key(signer) != account.public else ""
        token = jwt.encode(
            jwt.UserClaims(subject=user.public, name="u", issuer_account=issuer_account), signer, int(time.time())
        )
        path = self.root / f"{user.public[:12]}.creds"
        path.write_text(jwt.creds_file(token, user.seed))
        return path

    # -- configs ---------------------------------------------------------------------------------------------------
    def config(self, i: int) -> str:
        client, route, http = self.ports[i]
        routes = ", ".join(f"nats://{HOST}:{r}" for _, r, _ in self.ports)
        head = (
            f'server_name: n{i}\nlisten: "{HOST}:{client}"\nhttp: "{HOST}:{http}"\n'
            f'jetstream {{ store_dir: "{self.root}/store{i}", max_mem: 64MB, max_file: 256MB, domain: leaf }}\n'
            f'cluster {{ name: leaf, listen: "{HOST}:{route}", routes: [{routes}] }}\n'
        )
        if self.variant == "config":
            users = ", ".join(f'{{user: "{u}", password: "{h}"}}' for u, h in self.hashes.items())
            return head + (
                f"accounts {{\n  DATA: {{ jetstream: enabled, users: [{users}] }}\n"
                f'  SYS: {{ users: [{{user: "sys", password: "{bcrypt_hash(self.sys_password)}"}}] }}\n}}\n'
                "system_account: SYS\n"
            )
        preload = {
            self.sys_account.public: self.account_jwt(self.sys_account, "SYS", False, self.issued),
            self.data_account.public: self.account_jwt(self.data_account, "DATA", True, self.issued),
        }
        (self.root / "op.jwt").write_text(self.op_jwt)
        return head + (
            f'operator: "{self.root}/op.jwt"\nsystem_account: "{self.sys_account.public}"\n'
            f'resolver: {{ type: full, dir: "{self.root}/jwt{i}", allow_delete: false, interval: "2m" }}\n'
            "resolver_preload: { " + ", ".join(f'"{k}": "{v}"' for k, v in preload.items()) + " }\n"
        )

    def write(self) -> None:
        if self.variant == "config":
            self.hashes = {u: bcrypt_hash(p) for u, p in self.users.items()}
        for i in range(NODES):
            (self.root / f"n{i}.conf").write_text(self.config(i))

    # -- processes -------------------------------------------------------------------------------------------------
    def start(self) -> float:
        self.write()
        began = time.monotonic()
        exe = binary.locate()
        self.procs = [
            subprocess.Popen([exe, "-c", str(self.root / f"n{i}.conf")], stderr=subprocess.DEVNULL)
            for i in range(NODES)
        ]
        while not all(self.ready(i) for i in range(NODES)):
            if time.monotonic() - began > 60:
                raise RuntimeError(f"{self.variant} cluster not ready in 60 s")
            time.sleep(0.02)
        return time.monotonic() - began

    def ready(self, i: int) -> bool:
        _, _, http = self.ports[i]
        try:
            meta = jsz(HOST, http).meta
            return bool(meta and meta.leader) and healthz(HOST, http).ok
        except (OSError, ValueError):
            return False

    def reload(self) -> None:
        before = [config_load_time(HOST, self.ports[i][2]) for i in range(NODES)]
        for p in self.procs:
            p.send_signal(signal.SIGHUP)
        for i in range(NODES):
            while config_load_time(HOST, self.ports[i][2]) == before[i]:
                time.sleep(0.005)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(10)

    # -- users -----------------------------------------------------------------------------------------------------
    def url(self) -> str:
        return f"nats://{HOST}:{self.ports[0][0]}"

    async def connect_as(self, user: str, **kw: Any) -> nats.NATS:
        kw.setdefault("error_cb", _quiet)
        if self.variant == "config":
            return await nats.connect(self.url(), user=user, password=self.users[user], **kw)
        return await nats.connect(self.url(), user_credentials=str(self.creds[user]), **kw)

    def add_user(self, user: str) -> None:
        if self.variant == "config":
            self.users[user] = "pw-" + os.urandom(6).hex()
            self.write()
            self.reload()
            return
        key = new_nkey("user")
        self.keys[user] = key
        self.creds[user] = self.creds_for(key, self.data_account, self.data_signing.seed)

    async def revoke_user(self, user: str) -> None:
        if self.variant == "config":
            del self.users[user]
            self.write()
            self.reload()
            return
        self.revoked[self.keys[user].public] = int(time.time())
        token = self.account_jwt(self.data_account, "DATA", True, int(time.time()) + 1)
        nc = await nats.connect(self.url(), user_credentials=str(self.sys_creds))
        try:
            reply = await nc.request("$SYS.REQ.CLAIMS.UPDATE", token.encode(), timeout=5)
            if b'"code":200' not in reply.data.replace(b" ", b""):
                raise RuntimeError(f"push refused: {reply.data[:300]!r}")
        finally:
            await nc.close()


async def measure(variant: str, connects: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"natsmesh-leaftrust-{variant}-") as tmp:
        c = Cluster(variant, Path(tmp))
        if variant == "operator":
            c.keys, c.creds = {}, {}
            app = new_nkey("user")
            c.keys["app"], c.creds["app"] = app, c.creds_for(app, c.data_account, c.data_signing.seed)
        try:
            up = c.start()
            rss = rss_bytes([p.pid for p in c.procs]) / 2**20
            began = time.monotonic()
            for _ in range(connects):
                nc = await c.connect_as("app")
                await nc.close()
            connect_ms = (time.monotonic() - began) / connects * 1000
            began = time.monotonic()
            c.add_user("svc")
            while True:
                try:
                    svc = await c.connect_as("svc", allow_reconnect=False, connect_timeout=1)
                    break
                except Exception:
                    await asyncio.sleep(0.005)
            issue_ms = (time.monotonic() - began) * 1000
            closed = asyncio.Event()

            async def on_closed() -> None:
                closed.set()

            svc._closed_cb = on_closed  # nats-py calls it when the server closes the connection
            began = time.monotonic()
            await c.revoke_user("svc")
            await asyncio.wait_for(closed.wait(), 10)
            revoke_ms = (time.monotonic() - began) * 1000
            return {"up_s": up, "rss_mib": rss, "connect_ms": connect_ms, "issue_ms": issue_ms, "revoke_ms": revoke_ms}
        finally:
            c.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    m = machine()
    runs: dict[str, list[dict[str, float]]] = {"config": [], "operator": []}
    for r in range(args.rounds):
        for variant in ("config", "operator") if r % 2 == 0 else ("operator", "config"):
            runs[variant].append(asyncio.run(measure(variant, args.connects)))
            print(f"round {r + 1} {variant}: {runs[variant][-1]}", flush=True)
    med: Callable[[str, str], float] = lambda v, k: statistics.median(x[k] for x in runs[v])  # noqa: E731
    print(machine_line(m))
    print(f"{'':22}{'config':>10}{'operator':>10}{'op/config':>10}")
    for key, label in (
        ("up_s", "bring-up (s)"),
        ("rss_mib", "RSS of 3 (MiB)"),
        ("connect_ms", "connect (ms)"),
        ("issue_ms", "new user (ms)"),
        ("revoke_ms", "revoke (ms)"),
    ):
        a, b = med("config", key), med("operator", key)
        print(f"{label:22}{a:10.2f}{b:10.2f}{b / a:10.2f}")
    write_json(args.json, "leaf_trust", m, runs=runs)


if __name__ == "__main__":
    main()
