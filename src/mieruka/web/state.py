"""The app's runtime, with its page templates and metrics, as the web layer reaches them: kept on
the ASGI app's state, read from the request by handlers (`runtime: RuntimeDep`) and by middleware,
error handlers and page helpers (`runtime_of`, `pages_of`, `metrics_of`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.templating import Jinja2Templates

from ..runtime import Runtime
from .metrics import Metrics
from .sse import OpenStreams


def attach(api: FastAPI, runtime: Runtime, pages: Jinja2Templates, metrics: Metrics) -> None:
    """Keep the runtime, the page templates and the metrics (made once per ASGI app) where handlers
    find them."""
    api.state.runtime = runtime
    api.state.pages = pages
    api.state.metrics = metrics
    api.state.open_streams = OpenStreams(metrics.sse_clients)


def open_streams_of(request: Request) -> OpenStreams:
    """The event streams the app serving `request` holds open (counted, ended at shutdown)."""
    streams = getattr(request.app.state, "open_streams", None)
    if not isinstance(streams, OpenStreams):
        raise RuntimeError("this ASGI app has no open-streams registry (made by web.api.create_api)")
    return streams


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


def pages_of(request: Request) -> Jinja2Templates:
    """The page templates of the app serving `request`."""
    pages = getattr(request.app.state, "pages", None)
    if not isinstance(pages, Jinja2Templates):
        raise RuntimeError("this ASGI app has no page templates (made by web.api.create_api)")
    return pages


def metrics_of(request: Request) -> Metrics:
    """The metrics of the app serving `request` (its count of open event streams, ...)."""
    metrics = getattr(request.app.state, "metrics", None)
    if not isinstance(metrics, Metrics):
        raise RuntimeError("this ASGI app has no metrics (made by web.api.create_api)")
    return metrics


async def _runtime_dependency(request: Request) -> Runtime:
    # async: FastAPI runs a plain function dependency on a worker thread, a hop per request.
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]
