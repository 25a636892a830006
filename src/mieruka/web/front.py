"""The app with a front: the ASGI layer every request meets first (the security layer, and the
path prefix in front of it), placed before FastAPI's own middlewares rather than among them.

The routes the security layer serves itself (fastpath.py: submit, get a job, the event streams)
then pass through nothing else: FastAPI's error, telemetry and body-limit middlewares cost a
submit a tenth of its time, and held their frames for as long as a stream stayed open. The other
requests go on to FastAPI's stack as before; errors there are answered as before, and the security
layer answers its own (errors.py) and the fast path's (through the app's exception handlers).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class Api(FastAPI):
    """FastAPI whose requests meet `front` first; `put_in_front` wraps a layer around what is
    there (at first, `behind`: FastAPI's own stack), before the app serves."""

    front: ASGIApp | None = None
    _answered: tuple[tuple[str, str], ...] = ()

    def put_in_front(self, build: Callable[[ASGIApp], ASGIApp]) -> None:
        self.front = build(self.front or self.behind)

    def answers_when_loaded(self, module: str, name: str) -> None:
        """Errors of the class `module.name`, of a library loaded later if ever (SQLAlchemy's), end
        where the app's handler of Exception answered them, as those its exception middleware
        handles do, instead of going on to the server's log as unhandled."""
        self._answered = (*self._answered, (module, name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is None or scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await front(scope, receive, send)

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own stack: its middlewares, exception handlers and routes."""
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            if not self._was_answered(exc):
                raise

    def _was_answered(self, exc: Exception) -> bool:
        for module, name in self._answered:
            loaded = sys.modules.get(module)
            if loaded is not None and isinstance(exc, getattr(loaded, name)):
                return True
        return False
