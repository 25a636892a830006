"""Run an app's ASGI server with uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App


def serve(app: App, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    if host is not None or port is not None:
        app.configure(host=host, port=port)
    from .cli_accounts import refuse_open_network

    refuse_open_network(app)
    settings = app.settings
    uvicorn.run(
        app.asgi(),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=True,
        # Only these proxies' X-Forwarded-For/-Proto are believed: client address and https scheme
        # (Secure cookies) come from them.
        forwarded_allow_ips=settings.trusted_proxies,
        # Open event streams never end by themselves: give them this long at shutdown.
        timeout_graceful_shutdown=3,
    )
