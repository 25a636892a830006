"""Runs the declared pools: starts one when a job arrives for its queues, stops it once idle, and
lets an admin start or stop it by hand. Every server runs a manager; the store's compare-and-set
state changes make exactly one of them act on each change. Hooks run in background threads: a
start that takes minutes (an EC2 boot) never holds up a request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from ..core.clock import utcnow
from ..errors import ConflictError, NotFoundError
from ..notes import note, span
from ..store.base import JobStore
from ..store.pools import SqlPoolStore
from .base import TRANSITIONS, Pool, PoolSpec, PoolState

log = logging.getLogger("mieruka.pools")


class PoolNotFound(NotFoundError):
    code = "pool_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"no compute pool named {name!r}")


class PoolManager:
    def __init__(
        self,
        pools: Sequence[Pool],
        store: SqlPoolStore,
        jobs: JobStore,
        spec: Callable[[Pool], PoolSpec],
        anyone_online: Callable[[], bool] | None = None,
        check_every: float = 5.0,
    ) -> None:
        self.pools = {pool.name: pool for pool in pools}
        self.store = store
        self.jobs = jobs
        self.spec = spec
        # Presence (who has a page open) comes from the security feature when present; without
        # it, nobody counts as online and only queued or running jobs keep a pool up.
        self.anyone_online = anyone_online
        self.check_every = check_every
        self._busy: set[str] = set()  # pools whose hook runs in a thread of this process
        self._started_here: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def for_queue(self, queue: str) -> Pool | None:
        return next((p for p in self.pools.values() if queue in p.queues), None)

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        now = utcnow()
        for name in self.pools:
            self.store.ensure(name, PoolState.STOPPED.value, now)
        self._thread = threading.Thread(target=self._loop, name="mieruka-pools", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        # Workers that are this server's own child processes go down with it, recorded as such.
        for name in sorted(self._started_here):
            pool = self.pools[name]
            if getattr(pool.hooks, "stops_with_server", False) and self._move(
                name, {PoolState.RUNNING}, PoolState.STOPPING, note("pool.server_stopped")
            ):
                self._run_stop(pool)

    # -- what happens to a job -------------------------------------------------------------------
    def job_submitted(self, queue: str, job_id: int) -> str | None:
        """A job was queued: start its pool if need be. Returns the job's message while it waits."""
        pool = self.for_queue(queue)
        if pool is None:
            return None
        self.store.touch(pool.name, utcnow())
        record = self.store.get(pool.name)
        state = record.state if record is not None else PoolState.STOPPED.value
        if state == PoolState.RUNNING.value:
            return None
        if state == PoolState.STOPPED.value:
            self.start_pool(pool.name, note("pool.job_waiting", job=job_id), manual=False)
        return note("job.pool_starting", pool=pool.name)

    # -- by hand or by the loop ------------------------------------------------------------------
    def start_pool(self, name: str, reason: str, manual: bool = True) -> bool:
        pool = self._pool(name)
        if not self._move(name, {PoolState.STOPPED}, PoolState.STARTING, reason):
            if manual:
                raise ConflictError(f"pool {name} is {self._state(name)}; only a stopped pool can be started")
            return False
        self._background(pool, self._run_start)
        return True

    def stop_pool(self, name: str, reason: str, manual: bool = True) -> bool:
        pool = self._pool(name)
        if not self._move(name, {PoolState.RUNNING}, PoolState.STOPPING, reason):
            if manual:
                raise ConflictError(f"pool {name} is {self._state(name)}; only a running pool can be stopped")
            return False
        self._background(pool, self._run_stop)
        return True

    def describe(self, history: int = 20) -> list[dict[str, Any]]:
        """Every pool with its state, queues, idle limit, waiting jobs and recent changes."""
        records = {r.name: r for r in self.store.all()}
        depth = {q.queue: q for q in self.jobs.queue_stats()}
        out = []
        for name, pool in sorted(self.pools.items()):
            record = records.get(name)
            out.append(
                {
                    "name": name,
                    "state": record.state if record else PoolState.STOPPED.value,
                    "since": record.changed_at if record else None,
                    "message": record.message if record else None,
                    "busy_at": record.busy_at if record else None,
                    "queues": list(pool.queues),
                    "idle_stop": pool.idle_stop,
                    "hooks": repr(pool.hooks),
                    "queued": sum(depth[q].queued for q in pool.queues if q in depth),
                    "running": sum(depth[q].running for q in pool.queues if q in depth),
                    "history": [
                        {"at": e.at, "from": e.from_state, "to": e.to_state, "reason": e.reason}
                        for e in self.store.history(name, history)
                    ],
                }
            )
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _pool(self, name: str) -> Pool:
        if name not in self.pools:
            raise PoolNotFound(name)
        return self.pools[name]

    def _state(self, name: str) -> str:
        record = self.store.get(name)
        return record.state if record is not None else PoolState.STOPPED.value

    def _move(self, name: str, expect: set[PoolState], to: PoolState, reason: str) -> bool:
        assert all(to in TRANSITIONS[state] for state in expect), (expect, to)
        done = self.store.move(name, {s.value for s in expect}, to.value, reason, utcnow())
        if done:
            log.info("pool %s: %s (%s)", name, to.value, reason)
        return done

    def _background(self, pool: Pool, action: Callable[[Pool], None]) -> None:
        with self._lock:
            self._busy.add(pool.name)

        def run() -> None:
            try:
                action(pool)
            finally:
                with self._lock:
                    self._busy.discard(pool.name)

        threading.Thread(target=run, name=f"mieruka-pool-{pool.name}", daemon=True).start()

    def _run_start(self, pool: Pool) -> None:
        try:
            pool.hooks.start(self.spec(pool))
        except Exception as exc:
            log.exception("pool %s did not start", pool.name)
            self._move(pool.name, {PoolState.STARTING}, PoolState.STOPPED, note("pool.start_failed", error=str(exc)))
            return
        self._started_here.add(pool.name)
        self.store.touch(pool.name, utcnow())  # its idle time counts from now
        self._move(pool.name, {PoolState.STARTING}, PoolState.RUNNING, note("pool.started"))

    def _run_stop(self, pool: Pool) -> None:
        try:
            pool.hooks.stop(self.spec(pool))
        except Exception as exc:
            log.exception("pool %s did not stop", pool.name)
            self._move(pool.name, {PoolState.STOPPING}, PoolState.RUNNING, note("pool.stop_failed", error=str(exc)))
            return
        self._started_here.discard(pool.name)
        self._move(pool.name, {PoolState.STOPPING}, PoolState.STOPPED, note("pool.stopped"))

    def _loop(self) -> None:
        while not self._stop.wait(self.check_every):
            try:
                self.check()
            except Exception:
                log.exception("pool check failed")

    def check(self) -> None:
        """Start pools with waiting jobs, stop idle ones, fail starts and stops that never finished."""
        now = utcnow()
        depth = {q.queue: q for q in self.jobs.queue_stats()}
        online = bool(self.anyone_online()) if self.anyone_online is not None else False
        for name, pool in self.pools.items():
            record = self.store.get(name)
            if record is None:
                continue
            queued = sum(depth[q].queued for q in pool.queues if q in depth)
            active = queued + sum(depth[q].running for q in pool.queues if q in depth)
            if active or online:
                self.store.touch(name, now)
            state = PoolState(record.state)
            with self._lock:
                busy_here = name in self._busy
            if state is PoolState.STOPPED and queued:
                self.start_pool(name, note("pool.jobs_waiting", count=queued), manual=False)
            elif (
                state is PoolState.RUNNING
                and pool.idle_stop is not None
                and not active
                and not online
                and record.busy_at is not None
                and now - record.busy_at >= timedelta(seconds=pool.idle_stop)
            ):
                self.stop_pool(name, note("pool.idle", time=span(pool.idle_stop)), manual=False)
            elif (
                state in (PoolState.STARTING, PoolState.STOPPING)
                and not busy_here
                and now - record.changed_at > timedelta(seconds=pool.start_timeout)
            ):
                back = PoolState.STOPPED if state is PoolState.STARTING else PoolState.RUNNING
                late = "pool.start_late" if state is PoolState.STARTING else "pool.stop_late"
                self._move(name, {state}, back, note(late, time=span(pool.start_timeout)))
