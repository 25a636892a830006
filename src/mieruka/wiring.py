"""Builds an app's runtime: picks the store, bus, executor and artifact storage by name from its settings."""

from __future__ import annotations

import contextvars
import os
import sys
from typing import TYPE_CHECKING

from .artifacts import open_storage
from .artifacts.base import ArtifactStorage
from .bus.base import EventBus
from .bus.memory import MemoryBus
from .engine import Engine
from .errors import ConfigError
from .executors.base import Executor
from .executors.local import LocalExecutor
from .i18n import _
from .runtime import Declaration, Runtime
from .settings import Settings
from .store.check import shown_url
from .store.outage import reason, unavailable
from .store.sql import SqlJobStore

if TYPE_CHECKING:
    from .pools.manager import PoolManager


EXECUTORS = ("local", "threads", "celery")


def check_settings(settings: Settings) -> None:
    """Refuse, before anything starts, settings the engine could not start with."""
    if os.name != "posix":
        # Workers run in their own process groups, and cancel kills the whole group.
        raise ConfigError(
            _(
                "mieruka runs jobs on Linux, macOS and other POSIX systems, not on %(platform)s; "
                "on Windows run it under WSL",
                platform=sys.platform,
            )
        )
    if settings.executor not in EXECUTORS:
        raise ConfigError(unknown_executor(settings.executor))
    if settings.executor == "celery" and not settings.broker_url:
        raise ConfigError(_("executor 'celery' needs a broker: set MIERUKA_BROKER_URL (e.g. redis://host:6379/0)"))
    if settings.executor == "celery" and settings.effective_event_bus in ("", "memory"):
        # Workers are other processes: what they report must reach the servers' pages and waiters.
        raise ConfigError(
            _(
                "executor 'celery' with a broker other than Redis needs an event bus its workers can "
                "reach: set MIERUKA_EVENT_BUS (e.g. redis://host:6379/1)"
            )
        )
    if settings.artifact_storage not in ("", "local") and not settings.artifact_storage.startswith("s3://"):
        raise ConfigError(unknown_storage(settings.artifact_storage))
    if not _known_bus(settings.effective_event_bus):
        raise ConfigError(unknown_bus(settings.effective_event_bus))


def build_runtime(declared: Declaration, settings: Settings) -> Runtime:
    """The runtime of an app with these settings; nothing starts before `Runtime.start()`."""
    return Runtime(declared, settings, build_engine)


def check_runtime(runtime: Runtime) -> None:
    """check_settings, and what the app declares that its settings could not run."""
    check_settings(runtime.settings)
    from .networks import trusted_networks

    trusted_networks(runtime.settings.trusted_proxies)  # a name or '*' there: one line before serving
    check_sign_in(runtime.settings)
    if runtime.pools and runtime.settings.executor != "celery":
        raise ConfigError(
            _(
                "compute pools (%(pools)s) start Celery workers: they need MIERUKA_EXECUTOR=celery",
                pools=", ".join(runtime.pools),
            )
        )


def check_sign_in(settings: Settings) -> None:
    """The directory's and the single sign-on providers' settings, read now: a bad one is one line
    in the caller's language, not an error from inside the server, which reads them again."""
    if settings.ldap_url.strip():
        from .auth.service import directory_of

        directory_of(settings)
    if settings.oidc_providers.strip():
        from .auth.oidc_providers import configured

        configured(settings)


def start_runtime(runtime: Runtime) -> None:
    """Start the app's engine before serving it: a database that fails it (a migration refused,
    a lock taken meanwhile) is one line naming the database, not a traceback from the server's
    start-up. The server then stops it (server.serve). The engine starts in a context of its own (its
    loops and the processes it forks never take the caller's language); what fails is said in the
    caller's."""
    url = runtime.settings.effective_database_url
    try:
        contextvars.Context().run(runtime.start)
    except Exception as exc:
        sa_exc = sys.modules.get("sqlalchemy.exc")  # the error is SQLAlchemy's only if it is loaded
        if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
            raise ConfigError(
                _("cannot start on the database %(url)s: %(reason)s", url=shown_url(url), reason=reason(exc))
            ) from None
        problem = unavailable(exc, url)
        if problem is None:
            raise
        raise problem from None


def build_engine(runtime: Runtime) -> Engine:
    settings = runtime.settings
    check_runtime(runtime)
    home = settings.home_path
    home.mkdir(parents=True, exist_ok=True)
    store = SqlJobStore(runtime.database)
    artifacts = build_artifacts(settings)
    executor: Executor
    if settings.executor == "celery":
        from .executors.celery import CeleryExecutor

        executor = CeleryExecutor(settings, store)
    elif settings.executor == "local":
        executor = LocalExecutor(
            runtime.app_ref(),
            settings.effective_workers,
            home / "artifacts",
            home / "uploads",
            settings.artifact_storage,
            settings.s3_endpoint_url,
            worker_start=settings.worker_start,
        )
    elif settings.executor == "threads":
        from .executors.threads import ThreadExecutor

        executor = ThreadExecutor(runtime.tasks, settings.effective_workers, artifacts, home / "uploads")
    else:
        raise ConfigError(unknown_executor(settings.executor))
    engine = Engine(runtime.tasks, store, build_bus(settings.effective_event_bus), executor, artifacts, settings)
    if runtime.pools:
        engine.pools = build_pools(runtime, store)
    return engine


def build_pools(runtime: Runtime, store: SqlJobStore) -> PoolManager:
    from .pools.base import Pool, PoolSpec
    from .pools.manager import PoolManager
    from .store.pools import SqlPoolStore

    settings = runtime.settings
    # What a worker started for a pool needs to find the same store, broker and files.
    env = {
        "MIERUKA_EXECUTOR": "celery",
        "MIERUKA_DATABASE_URL": settings.effective_database_url,
        "MIERUKA_BROKER_URL": settings.broker_url,
        "MIERUKA_EVENT_BUS": settings.effective_event_bus,
        "MIERUKA_HOME": str(settings.home_path),
        "MIERUKA_ARTIFACT_STORAGE": settings.artifact_storage,
        "MIERUKA_S3_ENDPOINT_URL": settings.s3_endpoint_url,
    }
    ref = runtime.app_ref()

    def spec(pool: Pool) -> PoolSpec:
        return PoolSpec(pool.name, pool.queues, ref, env)

    return PoolManager(
        list(runtime.pools.values()),
        SqlPoolStore(store),
        store,
        spec,
        runtime.anyone_online,
        settings.pool_check_interval,
    )


def build_artifacts(settings: Settings) -> ArtifactStorage:
    return open_storage(settings.artifact_storage, settings.home_path / "artifacts", settings.s3_endpoint_url)


def build_bus(name: str) -> EventBus:
    if name in ("", "memory"):
        return MemoryBus()
    if name.startswith(("redis://", "rediss://", "unix://")):
        from .bus.redis import RedisBus

        return RedisBus(name)
    raise ConfigError(unknown_bus(name))


def _known_bus(name: str) -> bool:
    return name in ("", "memory") or name.startswith(("redis://", "rediss://", "unix://"))


def unknown_bus(name: str) -> str:
    return _("unknown event bus %(name)s: use 'memory' or a redis:// URL", name=repr(name))


def unknown_executor(name: str) -> str:
    return _("unknown executor %(name)s; available: %(names)s", name=repr(name), names=", ".join(EXECUTORS))


def unknown_storage(url: str) -> str:
    return _("unknown artifact storage %(url)s: use 'local' or s3://bucket/prefix", url=repr(url))
