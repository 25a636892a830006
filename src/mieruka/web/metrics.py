"""`GET /metrics` in the Prometheus text format: jobs by state, queue depths, workers, processes that
run jobs, durations, event streams.

Counts by state and workers are read from the store and the executor at each scrape; durations
and finished jobs are counted from the job events this server sees (with the Redis bus, that is
every server's jobs: scrape one server, or sum with care).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from ..bus.base import Unsubscribe
from ..core.clock import utcnow
from ..core.events import Event
from ..core.status import FINISHED
from ..nodes import is_up
from ..runtime import Runtime
from .counts import job_counts

if TYPE_CHECKING:
    from prometheus_client.core import Metric

RESTRICTED = "(restricted)"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_FINISHED = {s.value for s in FINISHED}
Collect = Callable[[], Iterable["Metric"]]


class Level:
    """A number that goes up and down (the open event streams), read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def inc(self) -> None:
        with self._lock:
            self.value += 1

    def dec(self) -> None:
        with self._lock:
            self.value -= 1


def _created_series() -> bool:
    """Whether prometheus_client shows `_created` samples (PROMETHEUS_DISABLE_CREATED_SERIES, or
    its `disable_created_metrics()`): ours follow it, as its own metrics do."""
    from prometheus_client import metrics

    return bool(getattr(metrics, "_use_created", True))


class _Counts:
    """A counter by label values, with the time each was first counted (Prometheus' `_created`)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labels = name, documentation, labels
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], list[float]] = {}  # values -> [count, created]

    def inc(self, *values: str) -> None:
        with self._lock:
            self._counts.setdefault(values, [0.0, time.time()])[0] += 1

    def family(self) -> Metric:
        from prometheus_client.core import Metric

        with self._lock:
            counts = [(values, count, created) for values, (count, created) in self._counts.items()]
        out = Metric(self.name, self.documentation, "counter")
        with_created = _created_series()
        for values, count, created in counts:
            labels = dict(zip(self.labels, values, strict=True))
            out.add_sample(self.name + "_total", labels, count)
            if with_created:
                out.add_sample(self.name + "_created", labels, created)
        return out


class _Histograms:
    """A histogram by one label's value, laid out as prometheus_client's Histogram lays it out."""

    def __init__(self, name: str, documentation: str, label: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.label, self.bounds = name, documentation, label, buckets
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[list[int], list[float]]] = {}  # value -> (per bucket + inf, [sum, created])

    def observe(self, value: str, amount: float) -> None:
        with self._lock:
            buckets, totals = self._seen.setdefault(value, ([0] * (len(self.bounds) + 1), [0.0, time.time()]))
            buckets[bisect_left(self.bounds, amount)] += 1  # the first bound it is not above; else +Inf
            totals[0] += amount

    def family(self) -> Metric:
        from prometheus_client.core import Metric
        from prometheus_client.utils import floatToGoString

        with self._lock:
            seen = [(value, list(buckets), totals[0], totals[1]) for value, (buckets, totals) in self._seen.items()]
        bounds = [floatToGoString(bound) for bound in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        out = Metric(self.name, self.documentation, "histogram")
        with_created = _created_series()
        for value, buckets, total, created in seen:
            running = 0
            for bound, count in zip(bounds, buckets, strict=True):
                running += count
                out.add_sample(self.name + "_bucket", {"le": bound, self.label: value}, running)
            out.add_sample(self.name + "_count", {self.label: value}, running)
            out.add_sample(self.name + "_sum", {self.label: value}, total)
            if with_created:
                out.add_sample(self.name + "_created", {self.label: value}, created)
        return out


class _Snapshot:
    """Numbers read at scrape time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        if not self.runtime.running:
            return
        engine, store = self.runtime.engine, self.runtime.store
        jobs = GaugeMetricFamily("mieruka_jobs", "Jobs in the store, by state.", labels=["state"])
        for state, count in job_counts(store).items():
            jobs.add_metric([state], count)
        yield jobs
        workers = GaugeMetricFamily("mieruka_workers", "Worker processes of this server, by state.", labels=["state"])
        pool = engine.workers()
        busy = sum(1 for w in pool if w["job_id"] is not None)
        ready = sum(1 for w in pool if w["ready"])
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], ready - busy)
        workers.add_metric(["starting"], len(pool) - ready)
        yield workers
        now = utcnow()
        depth = GaugeMetricFamily(
            "mieruka_queue_jobs", "Jobs waiting and running, by queue.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "mieruka_queue_oldest_wait_seconds",
            "How long the oldest waiting job of each queue has waited.",
            labels=["queue"],
        )
        for q in store.queue_stats():
            depth.add_metric([q.queue, "queued"], q.queued)
            depth.add_metric([q.queue, "running"], q.running)
            oldest.add_metric([q.queue], (now - q.oldest_queued_at).total_seconds() if q.oldest_queued_at else 0.0)
        yield depth
        yield oldest
        stale = self.runtime.settings.engine_stale_after
        nodes = GaugeMetricFamily(
            "mieruka_nodes",
            "Processes that run jobs (servers, Celery workers), by kind and whether they beat recently.",
            labels=["kind", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for node in store.engines():
            state = "up" if is_up(node, now, stale) else "down"
            key = (str(node.info.get("kind", "server")), state)
            counts[key] = counts.get(key, 0) + 1
        for (kind, state), count in sorted(counts.items()):
            nodes.add_metric([kind, state], count)
        yield nodes
        yield from _notifications(self.runtime)


def _notifications(runtime: Runtime) -> Iterator[Metric]:
    """Notification messages by state (sent, pending, failed; pending ones already tried once are
    also counted as retrying), and events recorded: read from the database, every server's."""
    from prometheus_client.core import GaugeMetricFamily

    from ..notify.deliveries import counts

    found = counts(runtime.database)
    messages = GaugeMetricFamily(
        "mieruka_notifications", "Notification messages in the database, by state.", labels=["state"]
    )
    for state in ("sent", "pending", "retrying", "failed"):
        messages.add_metric([state], found[state])
    yield messages
    yield GaugeMetricFamily("mieruka_notification_events", "Notification events recorded.", value=found["events"])


class Metrics:
    """What a scrape reads. Counted from the start in plain numbers: prometheus_client (about thirty
    modules) is imported at the first scrape, which many servers never get."""

    def __init__(self, runtime: Runtime) -> None:
        self.finished = _Counts("mieruka_jobs_finished", "Jobs that ended, by task and final state.", ("task", "state"))
        self.wait = _Histograms("mieruka_job_wait_seconds", "Time from submission to start.", "task", BUCKETS)
        self.run = _Histograms("mieruka_job_run_seconds", "Time from start to the end of an attempt.", "task", BUCKETS)
        self.sse_clients = Level()
        self._collects: list[Collect] = [_Snapshot(runtime).collect]
        self._unsubscribe: Unsubscribe | None = None

    def add(self, collect: Collect) -> None:
        """Also yield what `collect` yields at each scrape."""
        self._collects.append(collect)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        yield self.finished.family()
        yield self.wait.family()
        yield self.run.family()
        yield GaugeMetricFamily("mieruka_sse_clients", "Open Server-Sent Events streams.", value=self.sse_clients.value)
        for collect in self._collects:
            yield from collect()

    def exposition(self, hidden: Mapping[str, frozenset[str]]) -> bytes:
        """The text a scrape gets. `hidden` maps a label (task, source, stream) to the names the
        scraper may not see: they are not named, their numbers count under "(restricted)"."""
        from prometheus_client import generate_latest

        if not any(hidden.values()):
            return generate_latest(self)
        return generate_latest(_Restricted(self, hidden))

    def attach(self, runtime: Runtime) -> None:
        self._unsubscribe = runtime.engine.bus.subscribe(self._on_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: Event) -> None:
        if event.kind != "state":
            return
        data = event.data
        status = data.get("status")
        started = _time(data.get("started_at"))
        if status == "running":
            created = _time(data.get("created_at"))
            if created and started:
                self.wait.observe(event.task, max((started - created).total_seconds(), 0.0))
        elif status in _FINISHED:
            self.finished.inc(event.task, status)
            finished = _time(data.get("finished_at"))
            if started and finished:
                self.run.observe(event.task, max((finished - started).total_seconds(), 0.0))


class _Restricted:
    """The metrics with hidden task labels merged into one."""

    def __init__(self, metrics: Metrics, hidden: Mapping[str, frozenset[str]]) -> None:
        self.metrics, self.hidden = metrics, hidden

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import Metric

        for family in self.metrics.collect():
            merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in family.samples:
                labels = dict(sample.labels)
                for label, names in self.hidden.items():
                    if labels.get(label) in names:
                        labels[label] = RESTRICTED
                key = (sample.name, tuple(labels.items()))
                if key in merged and sample.name.endswith("_created"):
                    merged[key] = min(merged[key], sample.value)  # a time, not a count
                else:
                    merged[key] = merged.get(key, 0.0) + sample.value
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for (name, labels_items), value in merged.items():
                out.add_sample(name, dict(labels_items), value)
            yield out


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None
