"""The contract gate of a domain: the only writer of its gated products (`enforce: gate`).

Producers send a gated product's messages to its ingress subjects (`natsmesh.model.products.ingress_subject`);
the domain's permissions let only the gate identity write the product's own subjects. For each message the gate
checks the product's contract and then either

- writes it to the product, keeping the headers a producer may set (`PASSED_HEADERS`: a `Nats-Msg-Id` makes a
  producer's retry after a gate restart a duplicate JetStream drops) and stamping the contract version, and answers
  the producer with the stream's own acknowledgement, or
- writes it to the domain's dead-letter stream with the reason in its headers, and answers the producer with a
  JetStream-style error (code 400) naming the field and the reason.

The gate answers only on an inbox (`_INBOX.…`) no product holds: it may write every gated subject, so a reply
subject the producer names is never where its answer could be stored.

Writes are pipelined in arrival order (one subscription, one reply inbox, acks matched by token), so a
producer's messages keep their order. A producer is answered only after the stream stored its message; a gate
killed before that leaves the producer unanswered, and it sends again with the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from natsmesh.client import checker
from natsmesh.errors import NatsmeshError, NotHeldError
from natsmesh.model.identities import Credentials, user_url
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import DEADLETTER_PREFIX, INGRESS_PREFIX, Product, ingress_subject, subjects_overlap
from natsmesh.observe.connect import cluster_of, connect

QUEUE = "natsmesh-gate"  # gates of one domain share the work (a restarted gate overlaps its old one)
REPLY_PREFIX = "_INBOX."  # where the gate answers a producer: an inbox, never a subject a product holds
# What a producer's headers may carry into a product (and its dead-letter copy): a message id (JetStream drops a
# retry), what the payload is, and W3C trace context. Anything else (Nats-Expected-*, a forged Natsmesh-Reason or
# Natsmesh-Contract, ...) stays behind; the gate stamps the contract version it checked the message against.
PASSED_HEADERS = frozenset({"Nats-Msg-Id", "Content-Type", "Content-Encoding", "traceparent", "tracestate"})
ACK_WAIT = 5.0  # seconds the gate waits for a stream's ack before telling the producer to send again
REASON = "Natsmesh-Reason"
ORIGINAL_SUBJECT = "Natsmesh-Subject"
CONTRACT_VERSION = "Natsmesh-Contract"


def refusal(code: int, description: str) -> bytes:
    """A JetStream-style error reply: nats-py's `js.publish` raises it as an `APIError`."""
    return json.dumps({"error": {"code": code, "err_code": 10000 + code, "description": description}}).encode()


@dataclass
class GateStats:
    """What the gate has done since it started."""

    written: int = 0
    refused: int = 0
    failed: int = 0  # not acknowledged by the stream in time: the producer was told to send again
    by_product: dict[str, list[int]] = field(default_factory=dict)  # ref -> [written, refused]


@dataclass
class _Waiting:
    reply: str | None
    since: float
    ref: str
    refused: str | None = None  # the reason, for a message written to the dead-letter stream


class Gate:
    """One domain's gate over connection NC: `start` subscribes, `stop` drains."""

    def __init__(self, mesh: Mesh, domain: str, nc: Client) -> None:
        self.mesh = mesh
        self.domain = domain
        self.nc = nc
        self.products = [p for p in mesh.products if p.domain == domain and p.gated]
        if not self.products:
            raise NatsmeshError(f"domain {domain} has no product with `enforce: gate`; it needs no gate")
        self.stats = GateStats(by_product={p.ref: [0, 0] for p in self.products})
        self._waiting: dict[str, _Waiting] = {}
        self._tokens = itertools.count()
        self._inbox = f"_INBOX.{QUEUE}.{nc.client_id}.{time.monotonic_ns()}"
        self._subs: list[Subscription] = []
        self._sweeper: asyncio.Task[None] | None = None

    def reply_to(self, subject: str | None) -> str | None:
        """Where a producer that named SUBJECT as its reply is answered: an inbox (`_INBOX.…`) that no product of
        the domain holds, else nowhere. The gate may write every gated subject, so answering on a subject the
        producer names would let it write the gate's ack (or refusal) into a product."""
        if not subject or not subject.startswith(REPLY_PREFIX) or any(c in subject for c in " \t\r\n*>"):
            return None
        if any(subjects_overlap(subject, s) for p in self.mesh.products for s in p.subjects):
            return None
        return subject

    def product_of(self, subject: str) -> Product | None:
        return next((p for p in self.products if any(subjects_overlap(subject, s) for s in p.subjects)), None)

    async def start(self) -> None:
        self._subs.append(await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_ack))
        for p in self.products:
            for s in p.subjects:
                self._subs.append(await self.nc.subscribe(ingress_subject(s), queue=QUEUE, cb=self._on_message))
        await self.nc.flush()
        self._sweeper = asyncio.create_task(self._sweep())

    async def _on_message(self, msg: Msg) -> None:
        subject = msg.subject.removeprefix(f"{INGRESS_PREFIX}.")
        product = self.product_of(subject)
        if product is None or product.contract is None:  # a subscription covers only gated products' subjects
            return
        token = f"{self._inbox}.{next(self._tokens)}"
        headers = {k: v for k, v in (msg.headers or {}).items() if k in PASSED_HEADERS}
        reply = self.reply_to(msg.reply)
        problem = checker(product.contract).payload_problem(msg.data)
        if problem is None:
            self._waiting[token] = _Waiting(reply, time.monotonic(), product.ref)
            stamped = headers | {CONTRACT_VERSION: product.contract.version}
            await self.nc.publish(subject, msg.data, reply=token, headers=stamped)
            return
        reason = f"contract {product.contract.version} of {product.ref}: {problem}"
        self._waiting[token] = _Waiting(reply, time.monotonic(), product.ref, reason)
        dead = headers | {REASON: reason, ORIGINAL_SUBJECT: subject, CONTRACT_VERSION: product.contract.version}
        await self.nc.publish(f"{DEADLETTER_PREFIX}.{product.name}", msg.data, reply=token, headers=dead)

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject, None)
        if waiting is None:  # answered as failed already
            return
        counts = self.stats.by_product[waiting.ref]
        if waiting.refused is not None:
            self.stats.refused += 1
            counts[1] += 1
            if waiting.reply:
                await self.nc.publish(waiting.reply, refusal(400, f"refused by the gate: {waiting.refused}"))
            return
        if b'"error"' in msg.data[:16]:  # the stream refused it (e.g. its limits): the producer hears why
            self.stats.failed += 1
        else:
            self.stats.written += 1
            counts[0] += 1
        if waiting.reply:
            await self.nc.publish(waiting.reply, msg.data)

    async def _sweep(self) -> None:
        """Tell producers whose message no stream acknowledged in `ACK_WAIT` seconds to send it again."""
        while True:
            await asyncio.sleep(ACK_WAIT / 5)
            cutoff = time.monotonic() - ACK_WAIT
            late = [t for t, w in self._waiting.items() if w.since < cutoff]
            for token in late:
                waiting = self._waiting.pop(token)
                self.stats.failed += 1
                if waiting.reply:
                    with contextlib.suppress(Exception):
                        await self.nc.publish(waiting.reply, refusal(503, "the gate got no ack from the stream"))

    async def stop(self) -> None:
        """Stop taking messages, wait (up to `ACK_WAIT`) for the acks of those in flight, answer them."""
        for sub in self._subs[1:]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        deadline = time.monotonic() + ACK_WAIT
        while self._waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._sweeper is not None:
            self._sweeper.cancel()
        with contextlib.suppress(Exception):
            await self.nc.flush()


async def connect_gate(mesh: Mesh, creds: Credentials, domain: str, name: str = "natsmesh-gate") -> Client:
    """A connection as DOMAIN's gate identity to DOMAIN's own servers, reconnecting for as long as it runs;
    `NotHeldError` if CREDS hold no gate of DOMAIN's."""
    cluster = cluster_of(mesh, domain)
    if domain not in creds.gate_passwords:
        raise NotHeldError(f"these credentials hold no gate identity of domain {domain!r}")
    user, password = creds.gate(domain)
    servers = [user_url(mesh.scheme, user, password, n.host, n.client_port) for n in cluster.nodes]
    return await connect(
        mesh,
        servers,
        cluster,
        f"domain {domain!r}",
        name=f"{name}@{domain}",
        connect_timeout=2,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        ping_interval=4,
        max_outstanding_pings=3,
    )


async def run_gate(
    mesh: Mesh, creds: Credentials, domain: str, stop: asyncio.Event, on_ready: Callable[[Gate], None] | None = None
) -> GateStats:
    """Run DOMAIN's gate until STOP is set; returns what it did."""
    nc = await connect_gate(mesh, creds, domain)
    gate = Gate(mesh, domain, nc)
    try:
        await gate.start()
        if on_ready is not None:
            on_ready(gate)
        await stop.wait()
        await gate.stop()
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()
    return gate.stats
