"""The loss checker: publish uniquely identified messages, then read every copy back and account for each one.

`publish_steady` sends messages at a steady rate into a product, each with a `Nats-Msg-Id` (so a retry after an
unanswered publish cannot store it twice) and records every id JetStream acknowledged. `verify` reads the
product and every mirror and source that takes it, and reports per stream: acknowledged, stored, lost
(acknowledged but missing), duplicated, and out of order. `compare` is the pure heart of it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from natsmesh.client import MeshClient, UnknownProductError
from natsmesh.products import subjects_overlap
from natsmesh.spec import Mesh

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
    count: int,
    rate: float,
    subject: str | None = None,
    retries: int = 5,
    timeout: float = 2.0,
) -> PublishRun:
    """Publish COUNT messages into product REF at RATE per second; retry unanswered ones with the same id."""
    product = mc.mesh.product(ref)
    if subject is None:
        literal = [s for s in product.subjects if "*" not in s and ">" not in s]
        subject = literal[0] if literal else product.subjects[0].replace(">", "losscheck").replace("*", "lc")
    if not any(subjects_overlap(subject, p) for p in product.subjects):
        raise UnknownProductError(f"subject {subject!r} is not one of {ref}'s")
    run = PublishRun(run=uuid.uuid4().hex[:12], product=ref, subject=subject)
    js = await mc.jetstream(product.domain)
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        body = json.dumps({"run": run.run, "id": n}).encode()
        for attempt in range(retries + 1):
            try:
                await js.publish(subject, body, timeout=timeout, headers={MSG_ID: f"{run.run}-{n}"})
                run.acked.append(n)
                break
            except Exception:  # unanswered or refused: try again with the same id, then give up on it
                if attempt == retries:
                    run.failed.append(n)
                else:
                    run.retries += 1
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
    out = []
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
            seen = await _ids(mc, stream, run.run)
            check = compare(expected, seen, stream, role)
            if check.ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        checks.append(check)
    return checks
