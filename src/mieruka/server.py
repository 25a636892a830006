"""Run an app's ASGI server with uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App


def serve(app: App, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    from .connections import BodyTimeout, Limits, protocol_class

    if host is not None or port is not None:
        app.configure(host=host, port=port)
    from .cli_accounts import refuse_open_network

    refuse_open_network(app)
    settings = app.settings
    limits = Limits.from_settings(settings)
    from .web.api import create_api

    try:
        uvicorn.run(
            # At shutdown, within the graceful shutdown (a SIGTERM ends the process right after it).
            BodyTimeout(create_api(app, stop_app=True), settings.body_timeout),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
            http=protocol_class(limits),
            ws="none",  # no route is a WebSocket; an upgraded connection would leave the limits' count
            # X-Forwarded-For/-Proto give the client address (audit log, login throttle) and the https
            # scheme (Secure cookies): believed only from the trusted proxies, and with none, never read.
            proxy_headers=bool(limits.trusted),
            forwarded_allow_ips=[str(network) for network in limits.trusted],
            # Open event streams never end by themselves: give them this long at shutdown.
            timeout_graceful_shutdown=3,
        )
    finally:
        app.stop()  # when the server never got to its lifespan (nothing to do otherwise)
