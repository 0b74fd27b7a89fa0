"""The loss checker: publish uniquely identified messages, then read every copy back and account for each one.

`publish_steady` sends messages at a steady rate into a product, each with a `Nats-Msg-Id` (so a retry after an
unanswered publish cannot store it twice) and records every id JetStream acknowledged. `verify` reads the
product and every mirror and source that takes it, and reports per stream: acknowledged, stored, lost
(acknowledged but missing), duplicated, and out of order. `compare` is the pure heart of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from natsmesh.client import MeshClient, wire_subject
from natsmesh.errors import UnknownProductError
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import subjects_overlap
from natsmesh.observe.connect import ServiceLogin

MSG_ID = "Nats-Msg-Id"


@dataclass
class StreamCheck:
    stream: str  # DOMAIN/STREAM
    role: str  # origin | mirror | source
    expected: int
    stored: int
    lost: list[int]
    duplicated: int
    out_of_order: int

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["lost_count"] = len(self.lost)
        out["lost"] = self.lost[:20]
        out["ok"] = self.ok
        return out


@dataclass
class PublishRun:
    run: str
    product: str
    subject: str
    acked: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    longest_wait: float = 0.0  # the longest time between two acknowledgements: how long publishing stalled


def compare(expected: set[int], seen: list[int], stream: str = "", role: str = "origin") -> StreamCheck:
    """Account for every expected id in SEEN (ids in stored order)."""
    present = set(seen)
    out_of_order = sum(1 for a, b in itertools.pairwise(seen) if b < a)
    return StreamCheck(
        stream=stream,
        role=role,
        expected=len(expected),
        stored=len(seen),
        lost=sorted(expected - present),
        duplicated=len(seen) - len(present),
        out_of_order=out_of_order,
    )


async def publish_steady(
    mc: MeshClient,
    ref: str,
    *,
    count: int | None,
    rate: float,
    subject: str | None = None,
    retries: int = 5,
    timeout: float = 2.0,
    stop: asyncio.Event | None = None,
) -> PublishRun:
    """Publish COUNT messages (None: until STOP is set) into product REF at RATE per second; retry unanswered
    ones with the same id, over a fresh connection if the old one gave up (the domain was down)."""
    product = mc.product(ref)
    if subject is None:
        literal = [s for s in product.subjects if "*" not in s and ">" not in s]
        subject = literal[0] if literal else product.subjects[0].replace(">", "losscheck").replace("*", "lc")
    if not any(subjects_overlap(subject, p) for p in product.subjects):
        raise UnknownProductError(f"subject {subject!r} is not one of {ref}'s")
    run = PublishRun(run=uuid.uuid4().hex[:12], product=ref, subject=subject)
    wire = wire_subject(product, subject)  # a gated product's messages go through its gate
    start = last_ack = time.monotonic()
    for n in itertools.count() if count is None else range(count):
        if stop is not None and stop.is_set():
            break
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps({"run": run.run, "id": n}).encode()
        for attempt in range(retries + 1):
            try:
                js = await mc.jetstream(mc.locate(ref)[0])  # reconnects if the connection was given up
                await js.publish(wire, body, timeout=timeout, headers={MSG_ID: f"{run.run}-{n}"})
                run.acked.append(n)
                now = time.monotonic()
                run.longest_wait = max(run.longest_wait, now - last_ack)
                last_ack = now
                break
            except Exception:  # unanswered or refused: try again with the same id, then give up on it
                if attempt == retries:
                    run.failed.append(n)
                else:
                    run.retries += 1
                    if not await mc.relocate(ref):  # moved (`natsmesh move`): the catalog says where
                        await asyncio.sleep(min(1.0, 0.1 * (attempt + 1)))
    run.seconds = time.monotonic() - start
    return run


async def _ids(mc: MeshClient, ref: str, run: str) -> list[int]:
    out = []
    async for msg in mc.consume(ref, idle_timeout=1.5):
        try:
            doc = json.loads(msg.data)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("run") == run:
            out.append(int(doc["id"]))
    return out


def copies(mesh: Mesh, ref: str, subject: str) -> list[tuple[str, str]]:
    """(DOMAIN/STREAM, role) of every stream that takes product REF and would hold messages on SUBJECT."""
    out: list[tuple[str, str]] = []
    for c in mesh.consumptions:
        for s in c.sources:
            if s.ref == ref and (s.filter is None or subjects_overlap(s.filter, subject)):
                out.append((c.ref, c.mode))
    return out


async def verify(mesh: Mesh, mc: MeshClient, run: PublishRun, settle: float = 20.0) -> list[StreamCheck]:
    """Read the origin and every copy; wait up to SETTLE seconds for copies to catch up before judging."""
    expected = set(run.acked)
    targets = [(run.product, "origin"), *copies(mesh, run.product, run.subject)]
    checks = []
    for stream, role in targets:
        deadline = time.monotonic() + settle
        while True:
            try:
                seen = await _ids(mc, stream, run.run)
            except Exception:  # servers still electing leaders after a fault: ask again until SETTLE is up
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
                continue
            check = compare(expected, seen, stream, role)
            if check.ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        checks.append(check)
    return checks


async def held(mc: MeshClient, ref: str, subject: str | None = None) -> int:
    """How many messages DOMAIN/STREAM holds (on SUBJECT only, if given), asked of its own servers."""
    domain, stream = mc.locate(ref)
    js = await mc.jetstream(domain)
    if subject is None:
        return int((await js.stream_info(stream)).state.messages)
    info = await js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def catch_up(
    mesh: Mesh,
    mc: MeshClient,
    ref: str,
    subject: str,
    *,
    timeout: float = 60.0,
    poll: float = 0.1,
    among: set[str] | None = None,
) -> dict[str, float | None]:
    """Seconds until every copy of product REF (those in AMONG, if given) holds as many messages on SUBJECT
    as the product held when this was called (None: not within TIMEOUT). Counts are read from each stream's
    own servers; the product must get messages only on SUBJECT from this run's publisher for the figure to
    mean "complete"."""
    start = time.monotonic()
    while True:
        try:
            target = await held(mc, ref, subject)
            break
        except Exception:  # the product's servers are still electing a leader: ask again
            if time.monotonic() - start > timeout:
                raise
            await asyncio.sleep(poll)
    pending = {c for c, _ in copies(mesh, ref, subject) if among is None or c in among}
    done: dict[str, float | None] = dict.fromkeys(pending)
    while pending and time.monotonic() - start < timeout:
        for c in sorted(pending):
            with contextlib.suppress(Exception):  # a copy whose servers are still starting: ask again
                if await held(mc, c, subject) >= target:
                    done[c] = time.monotonic() - start
                    pending.discard(c)
        if pending:
            await asyncio.sleep(poll)
    return done


@dataclass(frozen=True)
class VerifyResult:
    """One loss check: what was published and what every stream holds of it."""

    run: PublishRun
    checks: list[StreamCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run.run,
            "product": self.run.product,
            "acked": len(self.run.acked),
            "failed": len(self.run.failed),
            "retries": self.run.retries,
            "seconds": round(self.run.seconds, 3),
            "ok": self.ok,
            "streams": [c.to_json() for c in self.checks],
        }


async def check_product(
    mesh: Mesh,
    ref: str,
    *,
    count: int,
    rate: float,
    subject: str | None = None,
    settle: float = 20.0,
    user: ServiceLogin | None = None,
) -> VerifyResult:
    """The whole loss check of `natsmesh chaos verify`: publish COUNT identified messages into product REF at
    RATE per second (as USER, a producer of the domain's own, if given), then read it and every copy back."""
    async with MeshClient(mesh, name="natsmesh-verify") as mc:
        if user is None:
            pub_run = await publish_steady(mc, ref, count=count, rate=rate, subject=subject)
        else:
            async with MeshClient(mesh, name="natsmesh-verify", user=user) as producer:
                pub_run = await publish_steady(producer, ref, count=count, rate=rate, subject=subject)
        return VerifyResult(pub_run, await verify(mesh, mc, pub_run, settle=settle))
