"""Each node's HTTP monitoring endpoint, answered as typed replies (`natsmesh.observe.wire`).

Asked of the node itself, so the answer does not depend on the hub or on the system account crossing leaf
links; light to import (no NATS client), so readiness polls start fast.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from natsmesh.observe.wire import Healthz, Jsz, Leafz, Varz


def http_json(host: str, port: int, path: str, timeout: float = 1.0) -> Any:
    """GET a monitoring endpoint and decode its JSON; raises OSError on failure."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        body = conn.getresponse().read()
    except (http.client.HTTPException, TimeoutError) as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()
    return json.loads(body)


def _monitor(host: str, port: int, path: str, timeout: float) -> dict[str, Any]:
    """PATH's JSON object; OSError or ValueError if the node does not answer with one."""
    doc = http_json(host, port, path, timeout)
    if not isinstance(doc, dict):
        raise ValueError(f"{path} did not answer with an object")
    return doc


def config_load_time(host: str, port: int, timeout: float = 1.0) -> str | None:
    """When the node last loaded its configuration (VARZ), or None if it does not answer: changes on reload."""
    try:
        return Varz.from_response(_monitor(host, port, "/varz", timeout)).config_load_time
    except (OSError, ValueError):
        return None


def leafz(host: str, port: int, timeout: float = 1.0) -> Leafz:
    """A node's leafnode connections, from its monitoring port; raises OSError or ValueError."""
    return Leafz.from_response(_monitor(host, port, "/leafz", timeout))


def healthz(host: str, port: int, timeout: float = 1.0) -> Healthz:
    return Healthz.from_response(_monitor(host, port, "/healthz", timeout))


def jsz(host: str, port: int, timeout: float = 1.0) -> Jsz:
    return Jsz.from_response(_monitor(host, port, "/jsz", timeout))
