"""Run an app's ASGI server with uvicorn."""

from __future__ import annotations

from types import FrameType
from typing import TYPE_CHECKING

from . import uvicorn_package
from .errors import MierukaError
from .i18n import _
from .process import settle
from .runtime import Runtime
from .settings import Settings
from .web.sse import OpenStreams

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp
else:
    uvicorn = uvicorn_package.load()


def serve(runtime: Runtime) -> None:
    """Serve the app of `runtime` on its settings' host and port until interrupted."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from .auth.proxy_auth import KeepPeer
    from .connections import BodyTimeout, Limits, protocol_class
    from .web.api import create_api

    refuse_open_network(runtime)
    settings = runtime.settings
    limits = Limits.from_settings(settings)
    api = create_api(runtime, stop_app=True)
    app: ASGIApp = BodyTimeout(api, settings.body_timeout)
    if limits.trusted:
        # X-Forwarded-For/-Proto give the client address (audit log, login throttle) and the https
        # scheme (Secure cookies): believed only from the trusted proxies, and with none, never read.
        # Applied here rather than by uvicorn so that KeepPeer sees the proxy's own address first
        # (trusted_user_header is believed only from it).
        trusted = [str(network) for network in limits.trusted]
        app = ProxyHeadersMiddleware(app, trusted_hosts=trusted)  # type: ignore[arg-type,assignment]  # uvicorn's ASGI types
    config = uvicorn.Config(
        # At shutdown, within the graceful shutdown (a SIGTERM ends the process right after it).
        KeepPeer(app),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        http=protocol_class(limits),
        ws="none",  # no route is a WebSocket; an upgraded connection would leave the limits' count
        proxy_headers=False,
        # Event streams are ended at the signal; a request still running gets this long.
        timeout_graceful_shutdown=3,
    )
    server = _Server(config, open_streams=api.state.open_streams)
    settle()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()  # when the server never got to its lifespan (nothing to do otherwise)
    if not server.started:
        raise SystemExit(3)  # uvicorn's code for a server that could not start (its reason is logged)


class _Server(uvicorn.Server):
    """uvicorn's server, ending the open event streams at the first signal: they never end by
    themselves, and would hold the shutdown for its whole graceful time."""

    def __init__(self, config: uvicorn.Config, open_streams: OpenStreams) -> None:
        super().__init__(config)
        self.open_streams = open_streams

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.open_streams.end_all()
        super().handle_exit(sig, frame)


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
    command = f"`mieruka users add NAME --role admin{home}`"
    raise MierukaError(
        _(
            "refusing to serve on %(host)s with no users: anyone on the network could use it. Add one first: "
            "%(command)s (or bind to 127.0.0.1)",
            host=settings.host,
            command=command,
        )
    )
