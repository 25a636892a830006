"""Compute pools over HTTP: `GET /api/pools` (states, queues, waiting jobs, history), start and stop
by hand (`POST /api/pools/{name}/start|stop`, and the buttons of the Workers page)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse

from ..notes import json_of, note
from ..pools.manager import PoolManager, PoolNotFound
from ..runtime import Runtime
from .routers import Router
from .serialize import iso
from .state import RuntimeDep


def pools_json(runtime: Runtime) -> list[dict[str, Any]]:
    manager = runtime.engine.pools
    if manager is None:
        return []
    out = manager.describe()
    for pool in out:
        for key in ("since", "busy_at"):
            pool[key] = iso(pool[key])
        pool["message_note"] = json_of(pool["message"])  # why, for any language (the page says it in its own)
        for event in pool["history"]:
            event["at"] = iso(event["at"])
            event["reason_note"] = json_of(event["reason"])
    return out


router = Router(tags=["system"])


def _one(runtime: Runtime, name: str) -> dict[str, Any]:
    found = next((p for p in pools_json(runtime) if p["name"] == name), None)
    if found is None:
        raise PoolNotFound(name)
    return found


def _manager(runtime: Runtime, name: str) -> PoolManager:
    if runtime.engine.pools is None:
        raise PoolNotFound(name)
    return runtime.engine.pools


@router.get("/api/pools")
def list_pools(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Compute pools: state (stopped, starting, running, stopping) since when and why, the queues
    they serve, their jobs waiting and running, the idle limit, and their latest changes."""
    return pools_json(runtime)


@router.get("/api/pools/{name}")
def get_pool(runtime: RuntimeDep, name: str) -> dict[str, Any]:
    """One compute pool with its history."""
    return _one(runtime, name)


@router.post("/api/pools/{name}/start", status_code=202)
def start_pool(runtime: RuntimeDep, name: str) -> dict[str, Any]:
    """Start a stopped pool now (409 if it is not stopped)."""
    _manager(runtime, name).start_pool(name, note("pool.started_by_hand"))
    return _one(runtime, name)


@router.post("/api/pools/{name}/stop", status_code=202)
def stop_pool(runtime: RuntimeDep, name: str) -> dict[str, Any]:
    """Stop a running pool now, even with jobs waiting (409 if it is not running)."""
    _manager(runtime, name).stop_pool(name, note("pool.stopped_by_hand"))
    return _one(runtime, name)


@router.post("/pools/{name}/{action}", include_in_schema=False)
def pool_form(runtime: RuntimeDep, request: Request, name: str, action: str) -> RedirectResponse:
    if action not in ("start", "stop"):
        raise PoolNotFound(f"{name}/{action}")
    manager = _manager(runtime, name)
    if action == "start":
        manager.start_pool(name, note("pool.started_by_hand"))
    else:
        manager.stop_pool(name, note("pool.stopped_by_hand"))
    return RedirectResponse(f"{request.scope.get('root_path', '')}/workers#pools", status_code=303)
