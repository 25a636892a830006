"""Run an app's ASGI server with uvicorn."""

from __future__ import annotations

from .errors import MierukaError
from .runtime import Runtime
from .settings import Settings


def serve(runtime: Runtime) -> None:
    """Serve the app of `runtime` on its settings' host and port until interrupted."""
    import uvicorn

    from .connections import BodyTimeout, Limits, protocol_class
    from .web.api import create_api

    refuse_open_network(runtime)
    settings = runtime.settings
    limits = Limits.from_settings(settings)
    try:
        uvicorn.run(
            # At shutdown, within the graceful shutdown (a SIGTERM ends the process right after it).
            BodyTimeout(create_api(runtime, stop_app=True), settings.body_timeout),
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
        runtime.stop()  # when the server never got to its lifespan (nothing to do otherwise)


def refuse_open_network(runtime: Runtime) -> None:
    """Serving to the network with nobody configured would let anyone in: refuse, saying how."""
    from .web.identity import is_loopback

    settings = runtime.settings
    if is_loopback(settings.host):
        return
    auth = runtime.auth
    auth.db.migrate()
    if auth.accounts.has_users():
        return
    home = f" --home {settings.home}" if settings.home != Settings().home else ""
    raise MierukaError(
        f"refusing to serve on {settings.host} with no users: anyone on the network could use it. Add one "
        f"first: `mieruka users add NAME --role admin{home}` (or bind to 127.0.0.1)"
    )
