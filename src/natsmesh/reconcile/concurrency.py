"""Many requests at once, but not too many: the one bounded gather of `apply` and the catalog."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def bounded(coros: list[Coroutine[Any, Any, T]], limit: int) -> list[T]:
    """Run COROS with at most LIMIT at once; results in order; the first failure is raised after all end."""
    gate = asyncio.Semaphore(limit)

    async def run(c: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await c

    results = await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)
    out: list[T] = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        out.append(r)
    return out
