"""Builds an engine from settings: picks the store, bus, executor and artifact storage by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .artifacts import open_storage
from .artifacts.base import ArtifactStorage
from .bus.base import EventBus
from .bus.memory import MemoryBus
from .engine import Engine
from .errors import ConfigError
from .executors.base import Executor
from .executors.local import LocalExecutor
from .settings import Settings
from .store.sql import SqlJobStore

if TYPE_CHECKING:
    from .app import App


def build_engine(app: App) -> Engine:
    settings = app.settings
    home = settings.home_path
    home.mkdir(parents=True, exist_ok=True)
    store = SqlJobStore(settings.effective_database_url)
    artifacts = build_artifacts(settings)
    executor: Executor
    if settings.executor == "celery":
        from .executors.celery import CeleryExecutor

        executor = CeleryExecutor(settings, store)
    elif settings.executor == "local":
        executor = LocalExecutor(app.app_ref(), settings.effective_workers, home / "artifacts", home / "uploads",
                                 settings.artifact_storage, settings.s3_endpoint_url)
    else:
        raise ConfigError(f"unknown executor {settings.executor!r}; available: local, celery")
    return Engine(app.tasks, store, build_bus(settings.effective_event_bus), executor, artifacts, settings)


def build_artifacts(settings: Settings) -> ArtifactStorage:
    return open_storage(settings.artifact_storage, settings.home_path / "artifacts", settings.s3_endpoint_url)


def build_bus(name: str) -> EventBus:
    if name in ("", "memory"):
        return MemoryBus()
    if name.startswith(("redis://", "rediss://", "unix://")):
        from .bus.redis import RedisBus

        return RedisBus(name)
    raise ConfigError(f"unknown event bus {name!r}: use 'memory' or a redis:// URL")
