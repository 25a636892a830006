"""The app's runtime as the web layer reaches it: kept on the ASGI app's state, read from the
request by handlers (`runtime: RuntimeDep`) and by middleware and error handlers (`runtime_of`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from ..runtime import Runtime


def attach(api: FastAPI, runtime: Runtime) -> None:
    api.state.runtime = runtime


def runtime_or_none(request: Request) -> Runtime | None:
    """The runtime serving `request`, or None outside a mieruka app (an error raised before routing)."""
    if "app" not in request.scope:
        return None
    runtime = getattr(request.app.state, "runtime", None)
    return runtime if isinstance(runtime, Runtime) else None


def runtime_of(request: Request) -> Runtime:
    """The runtime serving `request`."""
    runtime = runtime_or_none(request)
    if runtime is None:
        raise RuntimeError("this ASGI app has no mieruka runtime (made by web.api.create_api)")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
