"""The job counts and histograms of /metrics, kept without prometheus_client until a scrape, read as
prometheus_client's own Counter and Histogram would show the same observations."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.samples import Sample

from mieruka.web.metrics import BUCKETS, _Counts, _Histograms


def _without_created(samples: list[Sample]) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for s in samples if not s.name.endswith("_created")]


@pytest.mark.parametrize("created", [True, False])
def test_histograms_read_as_prometheus_clients(created: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import metrics

    monkeypatch.setattr(metrics, "_use_created", created)  # as PROMETHEUS_DISABLE_CREATED_SERIES sets it
    registry = CollectorRegistry()
    theirs = Histogram("h_seconds", "doc", ["task"], buckets=BUCKETS, registry=registry)
    ours = _Histograms("h_seconds", "doc", "task", BUCKETS)
    picks = [*BUCKETS, 0.0, 0.004, 0.0051, 7.5, 3600.0001, 1e6] + [random.uniform(0, 4000) for _ in range(200)]
    for i, value in enumerate(picks):
        task = ("a", "b", "c")[i % 3]
        theirs.labels(task).observe(value)
        ours.observe(task, value)
    [expected] = list(registry.collect())
    got = ours.family()
    assert (got.name, got.type, got.documentation) == (expected.name, expected.type, expected.documentation)
    assert _without_created(got.samples) == _without_created(expected.samples)
    assert [s.name for s in got.samples] == [s.name for s in expected.samples]
    assert any(s.name.endswith("_created") for s in got.samples) is created


@pytest.mark.parametrize("created", [True, False])
def test_counts_read_as_prometheus_clients(created: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import metrics

    monkeypatch.setattr(metrics, "_use_created", created)  # as PROMETHEUS_DISABLE_CREATED_SERIES sets it
    registry = CollectorRegistry()
    theirs = Counter("done", "doc", ["task", "state"], registry=registry)
    ours = _Counts("done", "doc", ("task", "state"))
    for task, state in [("a", "failed"), ("b", "succeeded"), ("a", "failed"), ("a", "succeeded")]:
        theirs.labels(task, state).inc()
        ours.inc(task, state)
    [expected] = list(registry.collect())
    got = ours.family()
    assert (got.name, got.type) == (expected.name, expected.type)
    assert _without_created(got.samples) == _without_created(expected.samples)
    assert [s.name for s in got.samples] == [s.name for s in expected.samples]
    assert any(s.name.endswith("_created") for s in got.samples) is created
