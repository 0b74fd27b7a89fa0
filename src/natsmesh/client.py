"""Publishing to and consuming from data products, by name, from a connection to the right domain.

```python
async with MeshClient(mesh) as mc:
    await mc.publish("leaf-domain-a/ORDERS", b"{...}", subject="sales.orders.eu.1")
    async with mc.publisher("leaf-domain-a/ORDERS", max_inflight=1000) as pub:
        for doc in docs:
            await pub.publish(doc)            # waits only when MAX_INFLIGHT acks are outstanding
    # leaving the block waits for every ack and raises PublishError if any failed
    async for msg in mc.consume("leaf-domain-b/ORDERS", durable="audit"):
        handle(msg)
        await msg.ack()
```
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck, StreamInfo

from natsmesh.errors import (
    ContractSchemaError,
    ContractViolationError,
    NatsmeshError,
    NoStreamError,
    NotHeldError,
    PayloadLimitError,
    PolicyDeniedError,
    PublishError,
    UnknownProductError,
)
from natsmesh.model.contracts import Checker, SchemaError
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET, Contract, Product, catalog_key, ingress_subject, subjects_overlap
from natsmesh.model.record import Record
from natsmesh.observe.connect import Connections, ServiceLogin, cluster_of
from natsmesh.observe.streams import catalog_placement
from natsmesh.render.policy import may_read
from natsmesh.render.streams import desired_streams

SETTLE = 2.0  # seconds a publish asks again while no stream answers
T = TypeVar("T")


def split_ref(ref: str) -> tuple[str, str]:
    domain, sep, stream = ref.partition("/")
    if not sep or not domain or not stream:
        raise UnknownProductError(f"expected DOMAIN/PRODUCT, got {ref!r}")
    return domain, stream


async def when_answered(send: Callable[[], Awaitable[T]], settle: float = SETTLE) -> T:
    """SEND (one publish into a stream) again for up to SETTLE seconds while no stream answers: one created a
    moment ago may not be known to every server of its domain yet. "No responders" means the message reached
    no subscriber, so nothing stored it and sending again cannot duplicate it. Then the error propagates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while True:
        try:
            return await send()
        except nats.js.errors.NoStreamResponseError:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.1)


async def publish_settled(
    js: JetStreamContext, ref: str, subject: str, data: bytes, headers: dict[str, str] | None, settle: float
) -> PubAck:
    """Publish one message into product REF (`when_answered`), then `NoStreamError` naming the product."""
    try:
        return await when_answered(lambda: js.publish(subject, data, headers=headers), settle)
    except nats.js.errors.NoStreamResponseError:
        domain = ref.partition("/")[0]
        raise NoStreamError(
            f"no stream of domain {domain!r} took {subject!r}: is {ref} applied? (natsmesh apply)"
        ) from None


@functools.lru_cache(maxsize=256)
def checker(contract: Contract) -> Checker:
    """The compiled validator of CONTRACT (compiled once per process); `ContractSchemaError` for a schema natsmesh
    will not use, wherever it came from (a bundle's mesh.json, an old catalog): nothing is retrieved."""
    try:
        return Checker(contract.schema_json)
    except SchemaError as exc:
        raise ContractSchemaError(f"contract {contract.version} cannot be checked: {exc}") from None


def check_payload(product: Product, data: bytes, index: int | None = None) -> None:
    """Refuse DATA (`ContractViolationError`, with the field path) if PRODUCT's contract does not allow it."""
    if product.contract is not None and (why := checker(product.contract).payload_problem(data)) is not None:
        raise ContractViolationError(product.ref, product.contract.version, why, index)


def wire_subject(product: Product, subject: str) -> str:
    """Where a message for SUBJECT of PRODUCT is sent: the subject itself, or for a gated product the gate's
    ingress subject (only the gate may write the product's subjects)."""
    return ingress_subject(subject) if product.contract is not None and product.contract.gated else subject


class Publisher:
    """Asynchronous publishing into one product with at most MAX_INFLIGHT unacknowledged messages.

    The first message is sent and acknowledged on its own (`publish_settled`), so a stream created a moment
    ago is found before the rest follow, and a product that was never applied fails at once with its name.
    """

    def __init__(
        self,
        js: JetStreamContext,
        subject: str | None,
        max_inflight: int,
        ref: str = "",
        patterns: tuple[str, ...] | None = None,
        max_payload: tuple[str, int] | None = None,
        product: Product | None = None,
    ) -> None:
        """MAX_PAYLOAD: (domain, bytes) of the owning domain's payload limit, checked before sending; PRODUCT's
        contract, if it has one, is checked before sending too, and a gated product's messages go to its gate."""
        self.js = js
        self.contract_check = checker(product.contract) if product and product.contract else None
        self.contract_version = product.contract.version if product and product.contract else ""
        self.gated = bool(product and product.contract and product.contract.gated)
        self.max_payload = max_payload
        self.max_inflight = max_inflight
        self.subject = subject
        self.ref = ref
        self.patterns = patterns
        self.allowed: set[str] = set()  # subjects already found to be the product's
        # Acks come back in order, so finished futures gather at the left; `_settle` takes them off in bulk.
        # Nothing per message that the garbage collector tracks (no callback, no tuple): in a process with a
        # large heap, those made publishing 15-20 % slower than raw nats-py.
        self.pending: collections.deque[asyncio.Future[PubAck]] = collections.deque()
        self.indices: collections.deque[int] = collections.deque()  # message number of each pending future
        self.failures: list[tuple[int, BaseException]] = []
        self.count = 0
        self._acked = 0

    def _allow(self, subject: str) -> None:
        assert self.patterns is not None
        if not any(subjects_overlap(subject, p) for p in self.patterns):
            raise UnknownProductError(f"subject {subject!r} is not one of {self.ref}'s ({', '.join(self.patterns)})")
        if len(self.allowed) > 10000:
            self.allowed.clear()
        self.allowed.add(subject)

    @property
    def acked(self) -> int:
        """Messages acknowledged so far."""
        self._settle()
        return self._acked

    def _settle(self) -> None:
        pending, indices = self.pending, self.indices
        while pending and pending[0].done():
            fut, index = pending.popleft(), indices.popleft()
            if fut.cancelled():
                self.failures.append((index, asyncio.CancelledError()))
            elif (exc := fut.exception()) is not None:
                self.failures.append((index, exc))
            else:
                self._acked += 1

    async def publish(self, data: bytes, subject: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Send one message; waits only while MAX_INFLIGHT acks are outstanding."""
        if not subject:
            subject = self.subject
            if subject is None:
                raise UnknownProductError(f"{self.ref} has only wildcard subjects; give each message a subject")
        if subject not in self.allowed and self.patterns is not None:
            self._allow(subject)
        if self.max_payload is not None and len(data) > self.max_payload[1]:
            raise PayloadLimitError(self.max_payload[0], len(data), self.max_payload[1])
        if self.contract_check is not None and (why := self.contract_check.payload_problem(data)) is not None:
            raise ContractViolationError(self.ref, self.contract_version, why, self.count)
        if self.gated:
            subject = ingress_subject(subject)
        index = self.count
        self.count += 1
        if index == 0:
            try:
                await publish_settled(self.js, self.ref, subject, data, headers, SETTLE)
                self._acked += 1
            except NoStreamError:
                raise
            except Exception as exc:
                self.failures.append((index, exc))
            return
        try:
            # nats-py's own semaphore (publish_async_max_pending) bounds the acks in flight.
            fut = await self.js.publish_async(subject, data, headers=headers)
        except Exception as exc:
            self.failures.append((index, exc))
            return
        self.pending.append(fut)
        self.indices.append(index)
        if len(self.pending) > 2 * self.max_inflight:
            self._settle()

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait for every outstanding ack; raise `PublishError` if any publish failed."""
        if self.pending:
            _, not_done = await asyncio.wait(set(self.pending), timeout=timeout)
            for f in not_done:
                f.cancel()
            await asyncio.sleep(0)
            self._settle()
        if self.failures:
            raise PublishError(sorted(self.failures, key=lambda x: x[0]), self.count)


class MeshClient(Connections):
    """Publishing and consuming by product name, over connections to the mesh's domains (opened on demand,
    closed together)."""

    def __init__(
        self,
        mesh: Mesh,
        creds: Credentials | None = None,
        name: str = "natsmesh",
        identity: str | None = None,
        user: ServiceLogin | None = None,
    ) -> None:
        """IDENTITY (a domain) acts as that domain's client only: what the policy denies it is refused here with
        a clear message, instead of the no-responders or timeout the servers give. None: each domain's own.
        USER: as that user of a domain's own (`natsmesh user add`), with its creds file only."""
        if user is not None and creds is None:
            creds = Credentials({}, {}, {}, {}, {}, holder=user.cluster)
        super().__init__(mesh, creds, name, user)
        holder = self.creds.holder  # a party's folder acts as that party only
        if holder is not None and identity not in (None, holder):
            raise NotHeldError(f"the folder of {holder} holds {holder}'s identity only, not {identity}'s")
        self.identity = identity or holder
        if identity is not None:
            cluster_of(mesh, identity)  # UnknownDomainError for a domain the mesh does not have
        self.placed: dict[str, str] = {}  # product ref -> the cluster the catalog says it lives on, once asked

    def locate(self, ref: str) -> tuple[str, str]:
        """(cluster, stream) of REF: a product where it lives (as the catalog last said, else the spec), or a
        copy `CLUSTER/STREAM`."""
        with contextlib.suppress(KeyError):
            p = self.mesh.product(ref)
            return self.placed.get(ref, p.domain), p.name
        return split_ref(ref)

    async def relocate(self, ref: str) -> bool:
        """Ask the catalog where product REF lives now (the hub's, or the folder's own cluster's copy); True if
        it moved to another cluster since this client last looked, as `natsmesh move` does."""
        if self.user is not None:  # a user of a domain's own reads no catalog: where the spec says is all
            return False
        try:
            js = await self.jetstream(self.creds.holder or self.mesh.hub.name)
        except NatsmeshError:  # its catalog cannot be reached: where it was is all there is to go on
            return False
        cluster = await catalog_placement(js, CATALOG_BUCKET, catalog_key(ref))
        if cluster is None or cluster == self.locate(ref)[0]:
            return False
        cluster_of(self.mesh, cluster)  # UnknownDomainError for a cluster this spec does not know
        self.placed[ref] = cluster
        return True

    def check(self, action: str, domain: str, target: str) -> None:
        """Refuse, before sending, what the policy does not let `identity` (or the user) do in DOMAIN."""
        stream = self.locate(target)[1] if domain == (self.user.cluster if self.user else None) else ""
        if self.user is not None and domain == self.user.cluster and not self.user.may(action, stream):
            u = self.user
            raise PolicyDeniedError(
                f"user {u.name}", action, target, f"a {u.role} of {', '.join(u.streams) or 'every stream'}"
            )
        if self.identity is None or self.identity == domain:
            return
        if action == "read" and may_read(self.mesh, self.identity, target):
            copies = [
                c.ref
                for c in self.mesh.consumptions
                if c.domain == self.identity and any(s.ref == target for s in c.sources)
            ]
            how = (
                f"it is shared with it as {', '.join(copies)}: read that"
                if copies
                else "it is public: declare a consumption of it and read the copy"
            )
            raise PolicyDeniedError(self.identity, action, target, how)
        raise PolicyDeniedError(self.identity, action, target, f"owned by {domain}")

    def product(self, ref: str) -> Product:
        try:
            return self.mesh.product(ref)
        except KeyError:
            raise UnknownProductError(
                f"{ref!r} is not a product of mesh {self.mesh.name!r} "
                f"(products: {', '.join(p.ref for p in self.mesh.products) or 'none'})"
            ) from None

    def _product_subject(self, ref: str, subject: str | None, required: bool = True) -> tuple[str, str | None]:
        """The owning domain and the subject to publish on: SUBJECT, checked, or the product's literal one;
        what the policy does not let `identity` publish is refused first."""
        product = self.product(ref)
        domain = self.locate(ref)[0]
        self.check("publish on", domain, ref)
        if subject is None:
            literal = [s for s in product.subjects if "*" not in s and ">" not in s]
            if not literal and required:
                raise UnknownProductError(
                    f"{ref} has only wildcard subjects ({', '.join(product.subjects)}); give a subject to publish on"
                )
            return domain, literal[0] if literal else None
        if not any(subjects_overlap(subject, pattern) for pattern in product.subjects):
            raise UnknownProductError(
                f"subject {subject!r} is not one of {ref}'s subjects ({', '.join(product.subjects)})"
            )
        return domain, subject

    async def publish(
        self,
        ref: str,
        data: bytes,
        subject: str | None = None,
        headers: dict[str, str] | None = None,
        settle: float = SETTLE,
    ) -> PubAck:
        """Publish one message into product REF from a connection to the cluster it lives on; returns the ack.
        A stream that does not answer is asked again for up to SETTLE seconds (see `publish_settled`); then, if
        the catalog says the product moved to another cluster, there."""
        domain, subj = self._product_subject(ref, subject)
        assert subj is not None
        if len(data) > (limit := self.mesh.limits_of(domain).payload):
            raise PayloadLimitError(domain, len(data), limit)
        product = self.product(ref)
        check_payload(product, data)
        try:
            return await publish_settled(
                await self.jetstream(domain), ref, wire_subject(product, subj), data, headers, settle
            )
        except NoStreamError:
            if not await self.relocate(ref):
                raise
        js = await self.jetstream(self.locate(ref)[0])
        return await publish_settled(js, ref, wire_subject(product, subj), data, headers, settle)

    @contextlib.asynccontextmanager
    async def publisher(
        self, ref: str, subject: str | None = None, max_inflight: int = 1000, check_subjects: bool = True
    ) -> AsyncIterator[Publisher]:
        """A `Publisher` into product REF; leaving the block waits for every ack and raises on failures.

        Each message goes to SUBJECT (default: the product's literal subject) or the subject given to
        `publish`, which must be one of the product's unless CHECK_SUBJECTS is false.
        """
        domain, subj = self._product_subject(ref, subject, required=False)
        js = await self.jetstream(domain, publish_async_max_pending=max_inflight)
        check = self.product(ref).subjects if check_subjects else None
        limit = (domain, self.mesh.limits_of(domain).payload)
        pub = Publisher(js, subj, max_inflight, ref, check, limit, self.product(ref))
        yield pub
        await pub.flush()

    async def consume(
        self,
        ref: str,
        durable: str | None = None,
        start_seq: int | None = None,
        batch: int = 256,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[Msg]:
        """Messages of stream REF (a product, or a mirror/source in the domain that consumes one).

        Ordered (ephemeral, in sequence, no acks) without DURABLE. With DURABLE, a durable pull consumer:
        acknowledge each message (`await msg.ack()`) once it is handled, and the next consume with the same
        name resumes after the last acknowledged one. Messages fetched (BATCH at a time) but not acknowledged
        are redelivered once the consumer's ack wait (30 s) passes. Stops after IDLE_TIMEOUT seconds without
        messages if given.
        """
        domain, stream = self.locate(ref)
        self.check("read", domain, ref)
        if ref not in self.placed and stream not in desired_streams(self.mesh).get(domain, {}):
            raise UnknownProductError(f"{ref!r} is not a stream of mesh {self.mesh.name!r}")
        js = await self.jetstream(domain)
        deliver = DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL
        if self.user is not None:  # its consumers carry its name: the only ones its rights let it make
            if durable not in (None, self.user.name):
                raise NotHeldError(f"user {self.user.name} makes consumers named {self.user.name} only")
            async for msg in self._consume_named(
                js, stream, durable is not None, deliver, start_seq, batch, idle_timeout
            ):
                yield msg
            return
        if durable is None:
            async for msg in _consume_ordered(js, stream, deliver, start_seq, batch, idle_timeout):
                yield msg
            return
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=deliver, opt_start_seq=start_seq)
        psub = await js.pull_subscribe("", durable=durable, stream=stream, config=config)
        async for msg in _fetched(psub, batch, idle_timeout):
            yield msg

    async def _consume_named(
        self,
        js: JetStreamContext,
        stream: str,
        durable: bool,
        deliver: DeliverPolicy,
        start_seq: int | None,
        batch: int,
        idle_timeout: float | None,
    ) -> AsyncIterator[Msg]:
        """As `consume`, for a user of a domain's own: a pull consumer named after it, durable (acknowledged,
        resumed) if DURABLE, else without acks and deleted when done (an inactive one goes by itself in 30 s)."""
        assert self.user is not None
        name = self.user.name
        config = ConsumerConfig(
            name=name,
            durable_name=name if durable else None,
            ack_policy=AckPolicy.EXPLICIT if durable else AckPolicy.NONE,
            deliver_policy=deliver,
            opt_start_seq=start_seq,
            inactive_threshold=None if durable else 30.0,
        )
        psub = await js.pull_subscribe_bind(name, stream) if durable and await _has(js, stream, name) else None
        if psub is None:
            await js.add_consumer(stream, config)
            psub = await js.pull_subscribe_bind(name, stream)
        try:
            async for msg in _fetched(psub, batch, idle_timeout):
                yield msg
        finally:
            if not durable:
                with contextlib.suppress(Exception):
                    await js.delete_consumer(stream, name)


async def _fetched(
    psub: JetStreamContext.PullSubscription, batch: int, idle_timeout: float | None
) -> AsyncIterator[Msg]:
    """What pull subscription PSUB fetches, BATCH at a time, until IDLE_TIMEOUT seconds bring nothing (None: on)."""
    while True:
        try:
            msgs = await psub.fetch(batch, timeout=idle_timeout or 5.0)
        except nats.errors.TimeoutError:
            if idle_timeout:
                return
            continue
        for msg in msgs:
            yield msg


async def _consume_ordered(
    js: JetStreamContext,
    stream: str,
    deliver: DeliverPolicy,
    start_seq: int | None,
    batch: int,
    idle_timeout: float | None,
) -> AsyncIterator[Msg]:
    """An ordered consumer of STREAM (ephemeral, in sequence, no acks), until IDLE_TIMEOUT without messages."""
    sub = await js.subscribe(
        "",
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=deliver, opt_start_seq=start_seq),
        pending_msgs_limit=batch * 64,
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout or 3600 * 24)
            except nats.errors.TimeoutError:
                if idle_timeout:
                    return
                continue
            yield msg
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _has(js: JetStreamContext, stream: str, consumer: str) -> bool:
    try:
        await js.consumer_info(stream, consumer)
    except nats.js.errors.NotFoundError:
        return False
    return True


@dataclass(frozen=True)
class PublishResult(Record):
    """What `publish_lines` sent: how many messages were acknowledged and the product's last sequence after."""

    product: str
    published: int
    last_seq: int


async def publish_lines(
    mesh: Mesh,
    ref: str,
    lines: list[str],
    *,
    subject: str | None = None,
    max_inflight: int = 1000,
    identity: str | None = None,
    user: ServiceLogin | None = None,
) -> PublishResult:
    """Publish each of LINES as one message into product REF and wait for every ack (`natsmesh pub`). Every
    line is checked against the product's contract before anything is sent."""
    with contextlib.suppress(KeyError):  # an unknown product is named by MeshClient below
        product = mesh.product(ref)
        for i, line in enumerate(lines):
            check_payload(product, line.encode(), i if len(lines) > 1 else None)
    async with MeshClient(mesh, name="natsmesh-pub", identity=identity, user=user) as mc:
        if len(lines) == 1:
            ack = await mc.publish(ref, lines[0].encode(), subject=subject)
            return PublishResult(ref, 1, ack.seq)
        async with mc.publisher(ref, subject=subject, max_inflight=max_inflight) as p:
            for line in lines:
                await p.publish(line.encode())
        domain, stream = mc.locate(ref)
        js = await mc.jetstream(domain)
        return PublishResult(ref, p.acked, (await js.stream_info(stream)).state.last_seq)


@dataclass(frozen=True)
class StoredMessage(Record):
    """One message of a stream as `natsmesh tail` shows it."""

    JSON_OMIT = ("payload",)

    seq: int
    subject: str
    data: str  # the payload as text (undecodable bytes replaced)
    payload: bytes = b""  # the payload as stored (`tail --raw`)


async def _stream_info(js: JetStreamContext, ref: str, stream: str) -> StreamInfo:
    """Stream STREAM's info for `tail`: asked again for up to `SETTLE` seconds while its domain's JetStream does not
    answer yet (a mesh that just became ready); `NoStreamError` naming REF if it does not exist."""
    deadline = asyncio.get_running_loop().time() + SETTLE
    while True:
        try:
            return await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise NoStreamError(f"{ref} has no stream yet: is it applied? (natsmesh apply)") from None
        except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
            if asyncio.get_running_loop().time() > deadline:
                raise NoStreamError(
                    f"the JetStream of {ref.partition('/')[0]} did not answer for {ref} within {SETTLE:g} s; "
                    "is the mesh up and ready (`natsmesh status`)?"
                ) from None
            await asyncio.sleep(0.2)


async def tail(
    mesh: Mesh,
    ref: str,
    *,
    last: int = 10,
    follow: bool = False,
    identity: str | None = None,
    user: ServiceLogin | None = None,
) -> AsyncIterator[StoredMessage]:
    """The last LAST messages of stream REF (a product, mirror or source), then, with FOLLOW, every new one."""
    async with MeshClient(mesh, name="natsmesh-tail", identity=identity, user=user) as mc:
        domain, stream = mc.locate(ref)
        mc.check("read", domain, ref)
        js = await mc.jetstream(domain)
        state = (await _stream_info(js, ref, stream)).state
        if state.messages == 0 and not follow:
            return
        start = max(state.first_seq, state.last_seq - last + 1) if last else state.last_seq + 1
        async for msg in mc.consume(ref, start_seq=start, idle_timeout=None if follow else 1.0):
            meta = msg.metadata
            seq = meta.sequence.stream if meta else 0
            yield StoredMessage(seq, msg.subject, msg.data.decode(errors="replace"), msg.data)
            if not follow and seq >= state.last_seq:
                return


@dataclass(frozen=True)
class Violation(Record):
    seq: int
    subject: str
    problem: str


@dataclass(frozen=True)
class ContractTest(Record):
    """What `contract_test` found: how many stored messages it checked and which broke the contract."""

    product: str
    version: str
    checked: int
    first_seq: int
    last_seq: int
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        """Its fields, then whether it is `ok`, then the violations."""
        out = super().to_json()
        violations = out.pop("violations")
        return {**out, "ok": self.ok, "violations": list(violations)}


async def contract_test(mesh: Mesh, ref: str, *, last: int | None = None, identity: str | None = None) -> ContractTest:
    """Check the messages stored in product REF (the last LAST, or all) against its contract in MESH."""
    async with MeshClient(mesh, name="natsmesh-contract", identity=identity) as mc:
        product = mc.product(ref)
        if product.contract is None:
            raise UnknownProductError(f"{ref} has no contract in the spec (add `contract:` to the product)")
        check = checker(product.contract)
        domain, _ = mc.locate(ref)
        mc.check("read", domain, ref)
        js = await mc.jetstream(domain)
        state = (await js.stream_info(product.name)).state
        out: list[Violation] = []
        checked, first = 0, 0
        if state.messages:
            first = max(state.first_seq, state.last_seq - last + 1) if last else state.first_seq
            async for msg in mc.consume(ref, start_seq=first, idle_timeout=2.0):
                seq = msg.metadata.sequence.stream if msg.metadata else 0
                checked += 1
                if (why := check.payload_problem(msg.data)) is not None:
                    out.append(Violation(seq, msg.subject, why))
                if seq >= state.last_seq:
                    break
        return ContractTest(ref, product.contract.version, checked, first, state.last_seq, tuple(out))


def run(coro: Any) -> Any:
    """Run CORO to completion from synchronous code (the CLI)."""
    return asyncio.run(coro)


__all__ = [
    "ContractTest",
    "MeshClient",
    "PublishResult",
    "Publisher",
    "StoredMessage",
    "Violation",
    "check_payload",
    "checker",
    "contract_test",
    "publish_lines",
    "publish_settled",
    "run",
    "split_ref",
    "tail",
    "when_answered",
]
