"""Limits on real servers: a domain going over its own limits gets a clear error, and no other domain notices."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
import pytest_asyncio
import yaml
from nats.aio.client import Client

from helpers import MeshRunner, small_mesh_text
from natsmesh.client import MeshClient
from natsmesh.errors import PayloadLimitError
from natsmesh.local.layout import MeshDirs
from natsmesh.local.secrets import load_credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.streams import list_streams
from natsmesh.reconcile.apply import reconcile
from natsmesh.render.trust import realise

pytestmark = pytest.mark.integration
A, B = "leaf-domain-a", "leaf-domain-b"
LIMITS = {"connections": 4, "subscriptions": 300, "payload": "4KiB", "streams": 3}


def limits_spec(runner: MeshRunner, tmp: Path) -> Mesh:
    """Hub + a + b (one node each). a has tight limits and a product b copies; b has the defaults."""
    doc = yaml.safe_load(small_mesh_text(tmp / "d", domains=2, nodes=1, hub_nodes=1))
    a, b = doc["domains"]
    a["limits"] = LIMITS
    a["products"] = [{"name": "A_PUB", "subjects": [f"{A}.pub.>"], "limits": {"max_consumers": 2}}]
    b["products"] = [{"name": "B_OWN", "subjects": [f"{B}.own.>"]}]
    b["consumes"] = [{"product": f"{A}/A_PUB", "as": "A_COPY"}]
    return runner.load(yaml.safe_dump(doc))


@pytest_asyncio.fixture
async def limited(runner: MeshRunner, tmp_path: Path) -> AsyncIterator[tuple[Mesh, MeshClient]]:
    mesh = runner.up(limits_spec(runner, tmp_path))
    async with MeshClient(mesh, name="platform") as mc:
        await reconcile(mesh, mc=mc)
        await mc.publish(f"{A}/A_PUB", b"before", subject=f"{A}.pub.x")
        await copied(mc, 1)
        yield mesh, mc


async def copied(mc: MeshClient, n: int, timeout: float = 30.0) -> None:
    """Wait until b's copy of a's product holds N messages."""
    js = await mc.jetstream(B)
    deadline = time.monotonic() + timeout
    while (await js.stream_info("A_COPY")).state.messages < n:
        assert time.monotonic() < deadline, "b's copy of a's product stopped"
        await asyncio.sleep(0.1)


async def app(mesh: Mesh, domain: str, **options: Any) -> Client:
    """A connection as DOMAIN's own client user."""
    user, password = load_credentials(mesh, create=False).client(domain)
    node = mesh.domain(domain).nodes[0]
    return await nats.connect(
        f"nats://127.0.0.1:{node.client_port}",
        user=user,
        password=password,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        **options,
    )


async def b_unaffected(mesh: Mesh, mc: MeshClient, copies: int) -> None:
    """b connects, publishes a full-size message, takes many subscriptions, and its copy of a keeps flowing."""
    nc = await app(mesh, B)
    try:
        js = nc.jetstream()
        await js.publish(f"{B}.own.big", b"x" * 512 * 1024, stream="B_OWN")
        subs = [await nc.subscribe(f"{B}.interest.{i}") for i in range(400)]
        await nc.flush()
        assert nc.is_connected and len(subs) == 400
    finally:
        await nc.close()
    await mc.publish(f"{A}/A_PUB", b"still", subject=f"{A}.pub.x")
    await copied(mc, copies)


async def test_a_message_over_the_payload_limit_is_refused_for_that_domain_only(
    limited: tuple[Mesh, MeshClient],
) -> None:
    mesh, mc = limited
    with pytest.raises(PayloadLimitError, match=f"8192-byte message is over {A}'s payload limit of 4096 bytes"):
        await mc.publish(f"{A}/A_PUB", b"x" * 8192, subject=f"{A}.pub.x")  # natsmesh's client says so first
    # A raw client is cut off by a's server, which logs why.
    nc = await app(mesh, A)
    await nc.publish(f"{A}.pub.x", b"x" * 8192)
    with contextlib.suppress(Exception):
        await nc.flush(timeout=2)
    await asyncio.sleep(0.2)
    assert nc.is_closed
    await nc.close()
    await logged(mesh, A, "maximum payload exceeded: 8192 vs 4096")
    await b_unaffected(mesh, mc, 2)


async def logged(mesh: Mesh, domain: str, text: str, timeout: float = 10.0) -> None:
    """Wait until DOMAIN's first server has logged TEXT."""
    log = MeshDirs.of(mesh).log(mesh.domain(domain).nodes[0].name)
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{domain}'s server did not log {text!r}"
        await asyncio.sleep(0.1)


async def test_connections_over_the_limit_are_refused_for_that_domain_only(limited: tuple[Mesh, MeshClient]) -> None:
    mesh, mc = limited
    opened: list[Client] = []
    refusal = ""
    try:
        for _ in range(LIMITS["connections"] + 1):
            try:
                opened.append(await app(mesh, A))
            except Exception as exc:
                refusal = str(exc)
                break
        # natsmesh's own connection and a's leaf link count too: a's apps got what was left of the limit
        assert refusal and len(opened) < LIMITS["connections"], (len(opened), refusal)
        assert "maximum account active connections exceeded" in refusal.lower(), refusal
        await b_unaffected(mesh, mc, 2)
    finally:
        for nc in opened:
            await nc.close()


async def test_streams_over_the_reservation_are_refused_for_that_domain_only(
    limited: tuple[Mesh, MeshClient],
) -> None:
    mesh, mc = limited
    nc = await app(mesh, A)
    try:
        js = nc.jetstream()
        made = 0
        with pytest.raises(nats.js.errors.APIError) as err:
            for i in range(LIMITS["streams"] + 1):
                await js.add_stream(name=f"EXTRA_{i}", subjects=[f"{A}.extra.{i}"])
                made += 1
        assert "maximum number of streams reached" in str(err.value).lower(), err.value
        assert len(await list_streams(nc)) == LIMITS["streams"]
    finally:
        await nc.close()
    await b_unaffected(mesh, mc, 2)


async def test_a_product_takes_no_consumers_beyond_its_limit(limited: tuple[Mesh, MeshClient]) -> None:
    """A_PUB keeps one consumer for b's copy and room for one of its owner's; the next is refused."""
    mesh, mc = limited
    js = await mc.jetstream(A)
    await js.add_consumer("A_PUB", durable_name="own")
    with pytest.raises(nats.js.errors.APIError) as err:
        await js.add_consumer("A_PUB", durable_name="one-too-many")
    assert "maximum consumers limit reached" in str(err.value).lower(), err.value
    await b_unaffected(mesh, mc, 2)


async def test_interest_over_the_hub_limit_stops_at_that_domains_link(limited: tuple[Mesh, MeshClient]) -> None:
    """a's apps take more subscriptions than its account at the hub allows: the hub refuses the extra interest on
    a's link (a's server logs why), the link stays up, and b's interest and copies are untouched."""
    mesh, mc = limited
    nc = await app(mesh, A)
    try:
        for i in range(LIMITS["subscriptions"] + 50):
            await nc.subscribe(f"{A}.interest.{i}")
        await nc.flush()
        await logged(mesh, A, "aximum subscriptions exceeded")
        hub = mesh.hub.nodes[0]
        leafz = await asyncio.to_thread(_leafz, hub.http_port)
        named = realise(mesh, load_credentials(mesh, create=False)).hub_account(A)
        links = [lf for lf in leafz["leafs"] if lf["account"] == named]
        assert len(links) == 1 and links[0]["subscriptions"] <= LIMITS["subscriptions"], links
    finally:
        await nc.close()
    await b_unaffected(mesh, mc, 2)


def _leafz(port: int) -> dict[str, Any]:
    from natsmesh.observe.monitor import http_json

    data: dict[str, Any] = http_json("127.0.0.1", port, "/leafz")
    return json.loads(json.dumps(data))
