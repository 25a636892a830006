"""A pool's declaration, its states and their allowed changes, and the hooks interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class PoolState(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


# The one table of allowed changes: a failed start goes back to stopped, a failed stop to running.
TRANSITIONS: dict[PoolState, frozenset[PoolState]] = {
    PoolState.STOPPED: frozenset({PoolState.STARTING}),
    PoolState.STARTING: frozenset({PoolState.RUNNING, PoolState.STOPPED}),
    PoolState.RUNNING: frozenset({PoolState.STOPPING}),
    PoolState.STOPPING: frozenset({PoolState.STOPPED, PoolState.RUNNING}),
}


@dataclass(frozen=True)
class PoolSpec:
    """What a hook needs to know: the pool, the queues it serves, how to start a worker for the app
    (`mieruka worker <app_ref> --queues ...`) and the settings a worker needs, as MIERUKA_*
    environment variables."""

    name: str
    queues: tuple[str, ...]
    app_ref: str
    env: dict[str, str] = field(default_factory=dict)


class PoolHooks(Protocol):
    def start(self, pool: PoolSpec) -> None:
        """Bring the pool's workers up; return once started, raise if they cannot be."""

    def stop(self, pool: PoolSpec) -> None:
        """Take them down; raise if that failed."""


@dataclass(frozen=True)
class Pool:
    """A declared pool: `hooks` start and stop it; it serves `queues` (default: its name) and is
    stopped after `idle_stop` seconds without queued or running jobs while nobody is online."""

    name: str
    hooks: PoolHooks
    queues: tuple[str, ...]
    idle_stop: float | None
    start_timeout: float = 900.0  # a start (or stop) still unfinished after this long has failed
