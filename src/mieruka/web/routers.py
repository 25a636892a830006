"""Adding a router's routes to the app as they were built."""

from __future__ import annotations

from fastapi import APIRouter


def adopt(into: APIRouter, router: APIRouter) -> None:
    """Add `router`'s routes to `into` as they are. FastAPI's `include_router` builds every route
    a second time on the first request (dependencies, parameter and response models) and looks at
    each included router on every request after; ours declare their prefix, tags and responses
    themselves and are included with nothing to add, so their built routes serve as they are."""
    into.routes.extend(router.routes)
