"""Serving under a path prefix (`--root-path /mieruka`) behind any reverse proxy.

Some proxies strip the prefix before forwarding (nginx with a trailing slash), others pass the
full path (IIS ARR, nginx without one). Either way the app sees the ASGI shape it expects:
`root_path` is the prefix and `path` includes it, so routing and generated links both work.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class PathPrefix:
    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.prefix and scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if not (path == self.prefix or path.startswith(self.prefix + "/")):
                path = self.prefix + path  # the proxy stripped it
            scope = {**scope, "root_path": self.prefix, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
