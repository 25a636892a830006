"""`Runtime`: what runs an app — its settings, job engine, accounts and live hub — apart from what
the app declares (`App`: tasks, pipelines, dashboards, streams, sources, pools).

`wiring.build_runtime` makes one from an app; the web layer and the server see only the runtime,
never the `App`, so that the declaring side can import nothing of the running side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .core.dashboards import DashboardRegistry
from .core.streams import StreamSpec
from .core.task import TaskRegistry
from .errors import ConfigError, MierukaError
from .executors.zygote import available as zygote_available
from .executors.zygote import discard_early, launch_early
from .settings import Settings

if TYPE_CHECKING:
    from .auth.service import Auth
    from .core.access import Principal
    from .engine import Engine
    from .live.hub import Live
    from .notify.notifier import Notifier
    from .notify.rules import Rule as NotifyRule
    from .pools.base import Pool
    from .store.base import JobStore
    from .store.database import Database


class Declaration(Protocol):
    """What an app declares, as the runtime reads it (`App` is one)."""

    title: str
    description: str
    tasks: TaskRegistry
    dashboards: DashboardRegistry
    streams: dict[str, StreamSpec]
    pools: dict[str, Pool]
    # Whether anyone has the web UI open (compute pools stop only while nobody is); None: presence decides.
    anyone_online: Callable[[], bool] | None

    @property
    def sources(self) -> Any: ...  # a SourceRegistry (sources/ imports SQLAlchemy)

    @property
    def notifications(self) -> dict[str, NotifyRule]: ...  # the rules declared in code, by name

    def app_ref(self) -> str: ...


class Runtime:
    """The running services of one app: built cheaply, started by `start()` (the engine, its
    workers, the live hub), accounts opened on first use (the CLI manages them with no engine)."""

    def __init__(self, declared: Declaration, settings: Settings, build_engine: Callable[[Runtime], Engine]) -> None:
        self.declared = declared
        self.settings = settings
        self._build_engine = build_engine
        self._engine: Engine | None = None
        self._live: Live | None = None
        self._auth: Auth | None = None
        self._database: Database | None = None
        self._notifier: Notifier | None = None

    # -- what the app declares, read by the web layer ------------------------------------------
    @property
    def title(self) -> str:
        return self.declared.title

    @property
    def description(self) -> str:
        return self.declared.description

    @property
    def tasks(self) -> TaskRegistry:
        return self.declared.tasks

    @property
    def dashboards(self) -> DashboardRegistry:
        return self.declared.dashboards

    @property
    def streams(self) -> dict[str, StreamSpec]:
        return self.declared.streams

    @property
    def pools(self) -> dict[str, Pool]:
        return self.declared.pools

    def app_ref(self) -> str:
        """How worker processes import the app."""
        return self.declared.app_ref()

    def anyone_online(self) -> bool:
        """Whether anyone has the web UI open: the app's own test, else presence (a user seen within
        presence_expiry, by their requests and open pages' heartbeat)."""
        hook = self.declared.anyone_online
        if hook is not None:
            return bool(hook())
        return self.auth.presence.anyone_online()

    # -- what runs -----------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise ConfigError("the engine is not running: use `with app:` or app.start()")
        return self._engine

    @property
    def store(self) -> JobStore:
        """The running engine's job store: what the read-only views (logs, steps, counts) query."""
        return self.engine.store

    @property
    def running(self) -> bool:
        return self._engine is not None

    @property
    def holds_connections(self) -> bool:
        """Whether this runtime has opened its database or started its engine (a fork would copy them)."""
        return self._database is not None or self._engine is not None

    @property
    def live(self) -> Live:
        """Sources, tiles and streams of the running app."""
        if self._live is None:
            raise ConfigError("the app is not running: use `with app:` or app.start()")
        return self._live

    @property
    def database(self) -> Database:
        """The process's one connection plumbing, for jobs, pools, accounts and stream history."""
        if self._database is None:
            from .store.database import Database

            self.settings.home_path.mkdir(parents=True, exist_ok=True)
            self._database = Database(self.settings.effective_database_url, self.settings.database_busy_timeout)
        return self._database

    @property
    def notifier(self) -> Notifier:
        """The delivery loop of notifications (notify/), running with the engine."""
        if self._notifier is None:
            raise ConfigError("the app is not running: use `with app:` or app.start()")
        return self._notifier

    @property
    def auth(self) -> Auth:
        """Users, tokens, sessions, the audit log and presence."""
        if self._auth is None:
            from .auth.service import Auth

            self._auth = Auth(self.database, self.settings)
        return self._auth

    def start(self) -> Engine:
        """Open the store, start worker processes and the engine loop, and the live hub."""
        if self._engine is not None:
            return self._engine
        self._launch_zygote()
        try:
            engine = self._build_engine(self)
            engine.start()
        except BaseException:
            discard_early()
            raise
        self._engine = engine
        try:
            self._start_notifier()
        except BaseException:
            self.stop()
            raise
        # A dashboard of controls alone still has a page and an event stream to serve.
        if len(self.declared.sources) or self.streams or len(self.dashboards):
            from .live.hub import Live

            try:
                self._live = Live(
                    self.declared.sources, self.dashboards, self.streams.values(), self.settings, self.database
                )
                self._live.start()
            except BaseException:
                self.stop()
                raise
            notifier = self._notifier
            if notifier is not None:
                self._live.refresher.listen(
                    lambda source, state: notifier.on_source(source.name, state.error, state.error_at)
                )
        return engine

    def _launch_zygote(self) -> None:
        """The local executor's zygote imports the app while the rest starts (executors/zygote.py)."""
        settings = self.settings
        if settings.executor != "local" or settings.worker_start != "fork" or not zygote_available():
            return
        try:
            ref = self.app_ref()
        except ConfigError:
            return  # the executor says why
        launch_early(ref)

    def _start_notifier(self) -> None:
        from .notify.notifier import Notifier

        def listener(name: str) -> Principal | None:
            """A subscription's owner while their source still lets them in (their allow lists
            and groups as of now); None: removed, or cut off by their directory or provider."""
            auth = self.auth
            try:
                user = auth.accounts.get_user(name)
            except MierukaError:
                return None
            if auth.directory is not None and user.source in auth.directory.VOUCHES_FOR:
                return auth.directory.confirm(auth.accounts, user)
            return user.principal("notify") if user.source == "local" or user.synced_at else None

        self._notifier = Notifier(
            self.database, self.settings, self.tasks, self.declared.notifications, listener, self.dashboards
        )
        self._notifier.start()

    def stop(self) -> None:
        if self._notifier is not None:
            notifier, self._notifier = self._notifier, None
            notifier.stop()
        if self._auth is not None:
            auth, self._auth = self._auth, None
            auth.close()
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.stop()
            engine.store.close()
        if self._database is not None:
            database, self._database = self._database, None
            database.close()
