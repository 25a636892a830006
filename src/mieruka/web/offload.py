"""Blocking calls of the hot routes (the job store's reads and writes) on a thread of the event
loop's own executor. asyncio's run_in_executor without anyio's capacity limiter, cancel scope and
run variables (starlette's run_in_threadpool): those cost the event loop more than the store call."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def offload(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`await offload(engine.get, job_id)`: `fn(*args, **kwargs)` on a thread. A cancelled caller
    still waits for the call to end (as run_in_threadpool does): a submission that discards its
    uploads when cancelled must not do so while the job that names them is being stored."""
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
