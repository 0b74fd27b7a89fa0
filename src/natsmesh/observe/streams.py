"""Every stream of a domain, and every consumer of a stream, completely.

`STREAM.LIST` in a clustered domain answers with what the stream leaders reported in time and names the rest
under `missing`; nats-py's `streams_info` drops that list (and reads one page only), so a stream that exists can
look absent. Here every page is read and each missing stream is asked for on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo
from nats.js.errors import NotFoundError

from natsmesh.errors import StreamListError

API = "$JS.API"  # a connection to the domain's own servers


JS_NOT_ENABLED_FOR_ACCOUNT = 10039  # nats-server's JSNotEnabledForAccountErr
JS_ENABLING = 10.0  # seconds a stream listing waits for an account's JetStream being enabled


async def wait_jetstream(nc: Client, timeout: float = JS_ENABLING) -> None:
    """Until the account NC is connected to answers on its JetStream API without an error: a server that has just
    loaded an account's claims (operator mode, a hub just started) says "account not found" or "not enabled" for
    a moment. Returns after TIMEOUT regardless: the next call says what is wrong."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        with contextlib.suppress(nats.errors.TimeoutError, nats.errors.NoRespondersError):
            msg = await nc.request(f"{API}.INFO", b"", timeout=2.0)
            if "error" not in json.loads(msg.data):
                return
        await asyncio.sleep(0.1)


async def list_streams(nc: Client, timeout: float = 10.0) -> dict[str, StreamInfo]:
    """Name -> info of every stream in the account NC is connected to (its domain's JetStream).
    `StreamListError` if a stream neither listed nor answered on its own (the plan
    must not take it for absent). A server waits up to 4 s for its streams' leaders, hence the TIMEOUT."""
    found: dict[str, StreamInfo] = {}
    missing: list[str] = []
    offset = 0
    loop = asyncio.get_running_loop()
    enabling = loop.time() + JS_ENABLING  # a server that just loaded an account's claims enables its JetStream
    while True:
        try:
            msg = await nc.request(f"{API}.STREAM.LIST", json.dumps({"offset": offset}).encode(), timeout=timeout)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise StreamListError(f"the domain's JetStream did not list its streams: {exc}") from None
        resp = json.loads(msg.data)
        error = resp.get("error") or {}
        if error.get("err_code") == JS_NOT_ENABLED_FOR_ACCOUNT and loop.time() < enabling:
            await asyncio.sleep(0.2)  # a moment after (operator mode, a hub just started)
            continue
        if "error" in resp:
            raise StreamListError(f"listing streams: {resp['error'].get('description', resp['error'])}")
        page = resp.get("streams") or []
        for raw in page:
            info = StreamInfo.from_response(raw)
            found[info.config.name or ""] = info
        missing += resp.get("missing") or []
        offset += int(resp.get("limit") or 256)
        if offset >= int(resp.get("total") or 0):
            break
    # A stream whose every peer is offline is listed with its config *and* named missing; ask only for the rest.
    missing = [n for n in dict.fromkeys(missing) if n not in found]
    js = nc.jetstream()
    infos = await asyncio.gather(*(js.stream_info(n) for n in missing), return_exceptions=True)
    for name, info in zip(missing, infos, strict=True):
        if isinstance(info, NotFoundError):
            continue  # deleted meanwhile
        if isinstance(info, BaseException):
            raise StreamListError(f"stream {name!r} did not answer: {type(info).__name__}: {info}")
        found[name] = info
    return found


async def list_consumers(
    nc: Client, stream: str, timeout: float = 10.0, settle: float = 10.0
) -> dict[str, ConsumerInfo]:
    """Name -> info of every consumer of STREAM in NC's domain, every page read (`StreamListError` if the domain
    does not answer, or names consumers it cannot describe). Consumers that cannot describe themselves yet (their
    leaders are elected again after a restart with stores) are asked again for up to SETTLE seconds."""
    deadline = asyncio.get_running_loop().time() + settle
    while True:
        found, missing = await _consumer_pages(nc, stream, timeout)
        if not missing:
            return found
        if asyncio.get_running_loop().time() >= deadline:
            raise StreamListError(f"consumers of {stream} did not answer: {', '.join(missing)}")
        await asyncio.sleep(0.5)


async def _consumer_pages(nc: Client, stream: str, timeout: float) -> tuple[dict[str, ConsumerInfo], list[str]]:
    found: dict[str, ConsumerInfo] = {}
    missing: list[str] = []
    offset = 0
    while True:
        subject = f"{API}.CONSUMER.LIST.{stream}"
        try:
            msg = await nc.request(subject, json.dumps({"offset": offset}).encode(), timeout=timeout)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
            raise StreamListError(f"the domain's JetStream did not list the consumers of {stream}: {exc}") from None
        resp = json.loads(msg.data)
        if "error" in resp:
            raise StreamListError(f"listing consumers of {stream}: {resp['error'].get('description', resp['error'])}")
        for raw in resp.get("consumers") or []:
            info = ConsumerInfo.from_response(raw)
            found[info.name or ""] = info
        missing += resp.get("missing") or []
        offset += int(resp.get("limit") or 256)
        if offset >= int(resp.get("total") or 0):
            break
    return found, [n for n in dict.fromkeys(missing) if n not in found]


async def catalog_placement(js: JetStreamContext, bucket: str, key: str) -> str | None:
    """The cluster the catalog descriptor KEY in BUCKET (through JS) says its product lives on; None if the
    catalog, the entry or the field is missing."""
    try:
        entry = await (await js.key_value(bucket)).get(key)
        cluster = json.loads(entry.value or b"{}").get("cluster")
    except (nats.errors.Error, ValueError, AttributeError, RecursionError):  # a domain's copy may hold anything
        return None
    return cluster if isinstance(cluster, str) else None
