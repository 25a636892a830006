"""Compute pools over HTTP: `GET /api/pools` (states, queues, waiting jobs, history), start and stop
by hand (`POST /api/pools/{name}/start|stop`, and the buttons of the Workers page)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from ..app import App
from ..pools.manager import PoolNotFound
from .serialize import iso


def pools_json(app: App) -> list[dict[str, Any]]:
    manager = app.engine.pools
    if manager is None:
        return []
    out = manager.describe()
    for pool in out:
        for key in ("since", "busy_at"):
            pool[key] = iso(pool[key])
        for event in pool["history"]:
            event["at"] = iso(event["at"])
    return out


def pools_router(app: App) -> APIRouter:
    router = APIRouter(tags=["system"])

    def one(name: str) -> dict[str, Any]:
        found = next((p for p in pools_json(app) if p["name"] == name), None)
        if found is None:
            raise PoolNotFound(name)
        return found

    def manager_for(name: str) -> Any:
        if app.engine.pools is None:
            raise PoolNotFound(name)
        return app.engine.pools

    @router.get("/api/pools")
    def list_pools() -> list[dict[str, Any]]:
        """Compute pools: state (stopped, starting, running, stopping) since when and why, the queues
        they serve, their jobs waiting and running, the idle limit, and their latest changes."""
        return pools_json(app)

    @router.get("/api/pools/{name}")
    def get_pool(name: str) -> dict[str, Any]:
        """One compute pool with its history."""
        return one(name)

    @router.post("/api/pools/{name}/start", status_code=202)
    def start_pool(name: str) -> dict[str, Any]:
        """Start a stopped pool now (409 if it is not stopped)."""
        manager_for(name).start_pool(name, "started by hand")
        return one(name)

    @router.post("/api/pools/{name}/stop", status_code=202)
    def stop_pool(name: str) -> dict[str, Any]:
        """Stop a running pool now, even with jobs waiting (409 if it is not running)."""
        manager_for(name).stop_pool(name, "stopped by hand")
        return one(name)

    @router.post("/pools/{name}/{action}", include_in_schema=False)
    def pool_form(request: Request, name: str, action: str) -> RedirectResponse:
        if action not in ("start", "stop"):
            raise PoolNotFound(f"{name}/{action}")
        manager = manager_for(name)
        if action == "start":
            manager.start_pool(name, "started by hand")
        else:
            manager.stop_pool(name, "stopped by hand")
        return RedirectResponse(f"{request.scope.get('root_path', '')}/workers#pools", status_code=303)

    return router
