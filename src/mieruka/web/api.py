"""The ASGI application of one runtime: wires the routers, error handlers, security, OpenAPI, static files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from ..runtime import Runtime
from . import (
    accounts_api,
    controls,
    displays,
    events,
    jobs,
    languages,
    live,
    monitor,
    notifications,
    openapi,
    pools,
    sso,
    steps,
    system,
    tasks,
)
from .assets import Assets
from .errors import install_error_handlers
from .front import Api
from .live import LiveMetrics
from .metrics import Metrics
from .openapi import install_openapi
from .prefix import PathPrefix
from .routers import adopt
from .security import install_security
from .state import attach
from .ui import dashboards as ui_dashboards
from .ui import pages as ui_pages
from .ui.templating import page_templates


def create_api(runtime: Runtime, stop_app: bool = False) -> FastAPI:
    """The ASGI app. Its lifespan starts the runtime unless it runs already, and stops it at shutdown
    if it started it, or if `stop_app` (the server of `mieruka run` started it before serving)."""
    metrics = Metrics(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started_here = not runtime.running
        if started_here:
            await run_in_threadpool(runtime.start)
        metrics.attach(runtime)
        try:
            yield
        finally:
            metrics.detach()
            if started_here or stop_app:
                await run_in_threadpool(runtime.stop)

    api = Api(title=runtime.title, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    # First: FastAPI tries the routes in order, and a page's assets are most of its requests.
    api.mount("/static", Assets(), name="static")
    pages = page_templates(runtime)
    install_error_handlers(api, pages, postgres=runtime.settings.effective_database_url.startswith("postgres"))
    # In matching order.
    groups = (tasks, jobs, accounts_api, monitor, pools, steps, events, system, openapi, live, controls)
    routers = [group.router for group in groups]
    routers += [ui_pages.router, ui_dashboards.router, languages.router, displays.router, displays.pages]
    routers += [notifications.router, notifications.pages]
    for router in routers:
        adopt(api.router, router)
    metrics.add(LiveMetrics(runtime).collect)
    sso.install(api, runtime, pages)
    install_openapi(api, runtime)
    install_security(api, runtime)
    attach(api, runtime, pages, metrics)
    if runtime.settings.root_path:
        api.put_in_front(lambda inner: PathPrefix(inner, prefix=runtime.settings.root_path))
    return api
