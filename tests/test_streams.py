"""Listing a domain's streams completely: every page, and streams the server could not report in time."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from helpers import MeshRunner, small_mesh_text
from natsmesh.errors import StreamListError
from natsmesh.faults.chaos import node_pid
from natsmesh.local.secrets import load_credentials
from natsmesh.observe.monitor import http_json
from natsmesh.observe.streams import list_streams

pytestmark = pytest.mark.integration

COUNT = 260  # more than one STREAM.LIST page (256)


async def test_every_stream_is_listed_or_the_listing_fails_by_name(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d", domains=1, nodes=3)))
    domain = mesh.domains[0]
    user, password = load_credentials(mesh, create=False).client(domain.name)
    first = domain.nodes[0]
    nc = await nats.connect(f"nats://{user}:{password}@127.0.0.1:{first.client_port}")  # this node only
    try:
        js = nc.jetstream(timeout=30)  # 260 stream creations on two shared cores: the meta leader can lag
        for start in range(0, COUNT, 20):
            batch = range(start, min(start + 20, COUNT))
            await asyncio.gather(*(js.add_stream(StreamConfig(name=f"S{i}", subjects=[f"s.{i}"])) for i in batch))
        assert len(await js.streams_info()) == 256  # nats-py reads one page
        listed = await list_streams(nc)
        assert sorted(listed) == sorted(f"S{i}" for i in range(COUNT))

        # A node that leads some of these single-replica streams stops answering: the server names them
        # "missing" after 4 s, and the listing fails naming one rather than leaving it out.
        meta = http_json("127.0.0.1", first.http_port, "/jsz")["meta_cluster"]["leader"]  # answers STREAM.LIST
        leaders = {info.cluster.leader for info in listed.values() if info.cluster}
        other = next(n for n in sorted(leaders - {first.name, meta}))
        pid = node_pid(mesh, other)
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(StreamListError, match=r"stream 'S\d+' did not answer"):
                await list_streams(nc)
        finally:
            os.kill(pid, signal.SIGCONT)
        for _ in range(50):
            try:
                assert len(await list_streams(nc)) == COUNT
                break
            except StreamListError:
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("listing did not recover after the node continued")
    finally:
        await nc.close()
