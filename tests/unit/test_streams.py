"""Streams: the ring buffer keeps order and says when points were lost; a slow reader gets one
coalesced batch; producers (functions and generators) are paced and restarted after errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import pytest

from mieruka.core.streams import StreamBuffer, StreamSpec
from mieruka.errors import ConfigError
from mieruka.live.streamer import Streamer, normalize
from mieruka.web.feeds import _feed, positions
from mieruka.web.sse import OpenStreams


def test_the_ring_buffer_returns_points_in_order_as_arrays() -> None:
    buffer = StreamBuffer(5)
    for i in range(1, 4):
        assert buffer.append(float(i), {"a": i * 10.0}) == i
    batch = buffer.since(0)
    assert batch is not None and (batch.first, batch.last, batch.gap) == (1, 3, False)
    assert batch.t == [1.0, 2.0, 3.0] and batch.series == {"a": [10.0, 20.0, 30.0]}
    assert buffer.since(3) is None
    buffer.append(4.0, {"a": 40.0, "b": 1.0})  # a series that appears later: earlier points are null
    batch = buffer.since(2)
    assert batch is not None and batch.series == {"a": [30.0, 40.0], "b": [None, 1.0]}


def test_a_reader_that_fell_out_of_the_window_is_told_of_the_gap() -> None:
    buffer = StreamBuffer(3)
    for i in range(10):
        buffer.append(float(i), {"a": float(i)})
    batch = buffer.since(2)
    assert batch is not None and batch.gap and (batch.first, batch.last) == (8, 10)
    latest = buffer.since(0, limit=2)
    assert latest is not None and latest.t == [8.0, 9.0] and not latest.gap


def test_values_can_carry_their_time() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert normalize({"time": moment, "a": 1}) == (moment.timestamp(), {"a": 1.0})
    assert normalize((5.0, {"a": 2})) == (5.0, {"a": 2.0})
    assert normalize(3)[1] == {"value": 3.0}  # type: ignore[index]
    assert normalize(None) is None
    with pytest.raises(TypeError, match="dict of series"):
        normalize("text")


def test_declarations_are_checked() -> None:
    with pytest.raises(ConfigError, match="at most 50 points a second"):
        StreamSpec("fast", lambda: {}, every=0.001)
    assert StreamSpec("s", lambda: {}, every=0.1, window=30).capacity == 600


def _drain(streamer: Streamer, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while streamer.buffer.last < count:
        assert time.monotonic() < deadline, f"only {streamer.buffer.last} points"
        time.sleep(0.01)


def test_a_generator_is_paced_and_a_failing_function_restarts() -> None:
    def gen() -> Any:
        n = 0
        while True:
            n += 1
            yield {"n": n}

    streamer = Streamer(StreamSpec("g", gen, every=0.02))
    streamer.start()
    try:
        started = time.monotonic()
        _drain(streamer, 10)
        assert time.monotonic() - started >= 0.15  # ten points at 50 per second
        batch = streamer.batch(0)
        assert batch is not None and batch.series["n"][:10] == [float(i) for i in range(1, 11)]
    finally:
        streamer.stop()
    calls = {"n": 0}

    def shaky() -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ValueError("sensor glitch")
        return {"v": float(calls["n"])}

    streamer = Streamer(StreamSpec("f", shaky, every=0.02))
    streamer.start()
    try:
        _drain(streamer, 3)
        assert streamer.batch(0).series["v"][:2] == [1.0, 3.0]  # type: ignore[union-attr]
    finally:
        streamer.stop()


class _Live:
    def __init__(self, streamer: Streamer) -> None:
        self.streamer = streamer

    def stream(self, name: str) -> Streamer:
        return self.streamer


def test_a_slow_reader_gets_one_coalesced_batch_and_bounded_memory() -> None:
    streamer = Streamer(StreamSpec("fast", lambda: {"v": 1.0}, every=0.02, keep=1000))

    async def scenario() -> list[str]:
        feed = _feed(_Live(streamer), None, ["fast"], {}, 5.0, OpenStreams())  # type: ignore[arg-type]
        frames = [await feed.__anext__()]  # ready
        streamer.push({"v": 0.0})
        frames.append(await feed.__anext__())
        for i in range(200):  # the reader is busy while 200 points arrive
            streamer.push({"v": float(i)})
        frames.append(await feed.__anext__())
        assert isinstance(feed, AsyncGenerator)
        await feed.aclose()
        return frames

    frames = asyncio.run(scenario())
    assert frames[0].startswith("retry:")
    assert '"first":1,"last":1' in frames[1] and frames[1].startswith("id: 1\n")
    assert '"first":2,"last":201' in frames[2] and frames[2].startswith("id: 201\n")


def test_event_ids_name_each_streams_position() -> None:
    assert positions("42") == {"": 42}
    assert positions("load=4&beds=7") == {"load": 4, "beds": 7}
    assert positions(None) == {}
