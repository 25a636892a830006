"""One contract for every EventBus: the in-process MemoryBus and the Redis bus shared by processes.

Redis tests use a fresh key prefix each (deleted afterwards); they skip when Redis is not reachable at
MIERUKA_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) or the redis package is missing, and fail
instead when MIERUKA_REQUIRE_SERVICES=1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from mieruka.bus.base import EventBus
from mieruka.bus.memory import MemoryBus
from mieruka.core.events import Event
from tests.conftest import free_port, need_service

REDIS_URL = os.environ.get("MIERUKA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BUSES = ["memory", "redis"]
WAIT = 10.0  # the longest any delivery may take; tests end as soon as the events are there


class MakeBus(Protocol):
    def __call__(self, keep: int = ...) -> EventBus: ...


class Collector:
    """A subscriber callback that records events; tests wait on it with a deadline."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    @property
    def ids(self) -> list[int]:
        with self._changed:
            return [e.id for e in self.events]

    def wait_for(self, done: Callable[[list[Event]], bool], timeout: float = WAIT) -> list[Event]:
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.events), timeout):
                raise AssertionError(f"not delivered within {timeout}s; got ids {[e.id for e in self.events]}")
            return list(self.events)

    def wait_for_id(self, event_id: int) -> list[Event]:
        return self.wait_for(lambda events: any(e.id == event_id for e in events))

    def wait_for_count(self, count: int) -> list[Event]:
        return self.wait_for(lambda events: len(events) >= count)


def state(job_id: int, task: str = "add", **data: Any) -> Event:
    return Event("state", job_id, task, {"status": "running", **data}, extra_topics=(f"task:{task}",))


def progress(job_id: int, task: str = "add", value: float = 0.5) -> Event:
    return Event("progress", job_id, task, {"progress": value})


def fields(event: Event) -> tuple[Any, ...]:
    return event.id, event.kind, event.job_id, event.task, event.data, event.extra_topics


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        import redis
    except ImportError:
        need_service("the redis package is not installed (pip install 'mieruka[redis]')")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        need_service(f"Redis is not reachable at {REDIS_URL}: {exc}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(params=BUSES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def prefix() -> str:
    """This test's Redis key prefix (channel_prefix)."""
    return f"mieruka-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_bus(kind: str, prefix: str, request: pytest.FixtureRequest) -> Iterator[MakeBus]:
    """Builds buses of this test's kind, closed afterwards. Redis buses of one test share a fresh
    prefix: they behave like the buses of several server processes behind one Redis."""
    made: list[EventBus] = []
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""

    def make(keep: int = 20_000) -> EventBus:
        bus: EventBus
        if kind == "memory":
            bus = MemoryBus(keep=keep)
        else:
            from mieruka.bus.redis import RedisBus

            bus = RedisBus(url, prefix, keep=keep)
        made.append(bus)
        return bus

    try:
        yield make
    finally:
        for bus in made:
            bus.close()
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"{prefix}:*"))
            if keys:
                client.delete(*keys)
            client.close()


@pytest.fixture
def bus(make_bus: MakeBus) -> EventBus:
    return make_bus()


def flush(bus: EventBus, *collectors: Collector) -> None:
    """Publish a marker every collector listens to (subscribe them to all or to job:0) and wait
    for it: everything published before it has then been delivered, in order."""
    marker = bus.publish(Event("marker", 0, "marker", {}))
    for collector in collectors:
        collector.wait_for_id(marker.id)


def without_markers(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind != "marker"]


# -- ids and last_id ---------------------------------------------------------------------------
def test_publish_returns_the_event_with_increasing_ids(bus: EventBus) -> None:
    sent = [state(1), progress(1), state(2, "mul"), Event("log", 3, "add", {"line": "hello"})]
    published = [bus.publish(e) for e in sent]
    ids = [e.id for e in published]
    assert all(i > 0 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for before, after in zip(sent, published):
        assert before.id == 0  # the event given is left alone
        assert (after.kind, after.job_id, after.task, after.data, after.extra_topics) == (
            before.kind,
            before.job_id,
            before.task,
            before.data,
            before.extra_topics,
        )


def test_publish_many_gives_consecutive_ids_and_arrives_in_order(bus: EventBus) -> None:
    seen, job2 = Collector(), Collector()
    bus.subscribe(seen)
    bus.subscribe(job2, ["job:2"])
    before = bus.publish(state(1))
    sent = [state(2), progress(2), state(2, "mul", n=3)]
    published = bus.publish_many(sent)
    after = bus.publish(state(3))
    assert [e.id for e in published] == [before.id + 1, before.id + 2, before.id + 3]
    assert after.id == before.id + 4 and bus.last_id() == after.id
    assert [(e.kind, e.data) for e in published] == [(e.kind, e.data) for e in sent]
    assert bus.publish_many([]) == []
    flush(bus, seen)
    assert without_markers(seen.events) == [before, *published, after]
    assert job2.events == published
    assert bus.replay(before.id, ["job:2"]) == published


def test_start_publish_goes_before_what_the_caller_does_meanwhile(bus: EventBus) -> None:
    """The engine announces a job while it sends it to the broker: the announcement comes first
    for every subscriber, whatever the caller published in between."""
    seen = Collector()
    bus.subscribe(seen)
    finish = bus.start_publish([state(1), progress(1)])
    meanwhile = bus.publish(state(2))  # on another connection while the first call is in flight
    announced = finish()
    assert [e.id for e in announced] == [announced[0].id, announced[0].id + 1] and announced[0].id > 0
    assert meanwhile.id > announced[1].id
    flush(bus, seen)
    assert without_markers(seen.events) == [*announced, meanwhile]
    assert bus.start_publish([])() == []


def test_last_id_is_the_newest_published(bus: EventBus) -> None:
    before = bus.last_id()
    first = bus.publish(state(1))
    assert first.id > before
    assert bus.last_id() == first.id
    second = bus.publish(state(2))
    assert bus.last_id() == second.id > first.id


# -- subscribe ---------------------------------------------------------------------------------
def test_subscribe_to_everything(bus: EventBus) -> None:
    seen = Collector()
    bus.subscribe(seen)
    published = [bus.publish(state(1)), bus.publish(progress(2, "mul")), bus.publish(state(3, "add"))]
    got = seen.wait_for_count(3)
    assert [fields(e) for e in got] == [fields(e) for e in published]


def test_subscribe_to_a_job_topic(bus: EventBus) -> None:
    job1, everything = Collector(), Collector()
    bus.subscribe(job1, ["job:1"])
    bus.subscribe(everything)
    wanted = [bus.publish(state(1)), bus.publish(progress(1))]
    bus.publish(state(2))
    bus.publish(progress(11))  # "job:11" is not "job:1"
    wanted.append(bus.publish(state(1, status="succeeded")))
    flush(bus, everything)
    assert [fields(e) for e in job1.events] == [fields(e) for e in wanted]


def test_subscribe_to_an_extra_topic(bus: EventBus) -> None:
    mul, everything = Collector(), Collector()
    bus.subscribe(mul, ["task:mul"])
    bus.subscribe(everything)
    bus.publish(state(1, "add"))
    first = bus.publish(state(2, "mul"))
    bus.publish(progress(2, "mul"))  # progress events carry no task topic
    second = bus.publish(state(3, "mul"))
    flush(bus, everything)
    assert [e.id for e in mul.events] == [first.id, second.id]


def test_an_event_matching_two_topics_arrives_once(bus: EventBus) -> None:
    both, everything = Collector(), Collector()
    bus.subscribe(both, ["job:1", "task:add"])
    bus.subscribe(everything)
    event = bus.publish(state(1, "add"))
    flush(bus, everything)
    assert both.ids == [event.id]


def test_unsubscribe_stops_delivery(bus: EventBus) -> None:
    leaving_all, leaving_topic, staying = Collector(), Collector(), Collector()
    stop_all = bus.subscribe(leaving_all)
    stop_topic = bus.subscribe(leaving_topic, ["job:1"])
    bus.subscribe(staying)
    before = bus.publish(state(1))
    flush(bus, staying)
    assert leaving_all.ids[:1] == [before.id] and leaving_topic.ids == [before.id]

    stop_all()
    stop_topic()
    stop_topic()  # twice is harmless
    after = bus.publish(state(1))
    flush(bus, staying)
    assert after.id in staying.ids
    assert after.id not in leaving_all.ids and leaving_topic.ids == [before.id]


def test_an_event_published_right_after_subscribe_arrives(make_bus: MakeBus, kind: str) -> None:
    """subscribe() returns only once delivery is set up (for Redis: the listener is subscribed),
    so a waiter that subscribes and then checks the store cannot miss the finishing event."""
    for _ in range(3):
        listener = make_bus()  # a fresh bus: its first subscribe starts the listener
        publisher = listener if kind == "memory" else make_bus()
        seen = Collector()
        listener.subscribe(seen, ["job:7"])
        event = publisher.publish(state(7))
        seen.wait_for_id(event.id)


def test_subscribers_see_each_event_exactly_once_in_order(bus: EventBus) -> None:
    seen = Collector()
    bus.subscribe(seen)
    published = [bus.publish(state(n % 4)) for n in range(50)]
    flush(bus, seen)
    assert without_markers(seen.events) == published


def test_many_events_arrive_complete_and_in_order(bus: EventBus) -> None:
    everything, job3, task_mul = Collector(), Collector(), Collector()
    bus.subscribe(everything)
    bus.subscribe(job3, ["job:3"])
    bus.subscribe(task_mul, ["task:mul"])
    published = []
    for n in range(2000):
        job = n % 5
        task = "mul" if job % 2 else "add"
        published.append(bus.publish(progress(job, task, n / 2000) if n % 3 else state(job, task, n=n)))
    flush(bus, everything)
    assert without_markers(everything.events) == published
    assert job3.events == [e for e in published if e.job_id == 3]
    assert task_mul.events == [e for e in published if "task:mul" in e.extra_topics]


def test_a_jobs_record_reaches_live_subscribers_only(make_bus: MakeBus, kind: str) -> None:
    """The end event carries the job's record to the subscribers of every process (waiters need
    not read the store), but not into the replay ring nor to browsers (Event.to_dict)."""
    from mieruka.core.clock import utcnow
    from mieruka.core.job import ArtifactInfo, JobRecord
    from mieruka.core.status import JobStatus

    now = utcnow()
    record = JobRecord(
        id=7,
        task="add",
        status=JobStatus.SUCCEEDED,
        params={"x": 1, "s": "日本"},
        created_at=now,
        started_at=now,
        finished_at=now,
        result={"sum": [1.5, None]},
        worker="w:1",
        engine_id="e1",
        artifacts=[ArtifactInfo("r.csv", 3, "text/csv", now)],
    )
    assert JobRecord.from_json(record.to_json()) == record
    ours = make_bus()
    theirs = make_bus() if kind == "redis" else ours  # in-process buses are one process's only
    here, there = Collector(), Collector()
    ours.subscribe(here, ["job:7"])
    theirs.subscribe(there, ["job:7"])
    end = Event("state", 7, "add", {"status": "succeeded"}, record=record.to_json())
    published = ours.publish_many([state(7), end])
    assert published[1].record == record.to_json()
    for collector in (here, there):
        got = collector.wait_for_count(2)
        assert [e.record for e in got] == [None, record.to_json()]
        assert JobRecord.from_json(got[1].record) == record  # type: ignore[arg-type]
        assert "record" not in got[1].to_dict()
    assert [e.record for e in ours.replay(published[0].id - 1) or []] == [None, None]
    if kind == "redis":  # a large record stays out of the event: waiters read the store
        from mieruka.bus.redis import RECORD_LIMIT

        big = replace(record, result="x" * RECORD_LIMIT)
        huge = ours.publish(Event("state", 7, "add", {"status": "succeeded"}, record=big.to_json()))
        assert there.wait_for_id(huge.id)[-1].record is None


# -- replay ------------------------------------------------------------------------------------
def test_replay_returns_the_later_events_in_order(bus: EventBus) -> None:
    published = [
        bus.publish(state(1)),
        bus.publish(progress(1)),
        bus.publish(state(2, "mul")),
        bus.publish(progress(2, "mul")),
        bus.publish(state(1, status="succeeded")),
        bus.publish(state(3, "mul")),
    ]
    after = published[1].id
    assert bus.replay(after) == published[2:]
    assert bus.replay(published[0].id - 1) == published
    assert bus.replay(after, ["job:1"]) == [published[4]]
    assert bus.replay(after, ["task:mul"]) == [published[2], published[5]]
    assert bus.replay(after, ["job:2", "job:3"]) == [published[2], published[3], published[5]]
    assert bus.replay(after, ["job:9"]) == []
    assert bus.replay(after, []) == []


def test_replay_when_nothing_is_newer(bus: EventBus) -> None:
    assert bus.replay(bus.last_id()) == []
    newest = bus.publish(state(1))
    assert bus.replay(newest.id) == []


def test_an_id_this_bus_never_gave_out_needs_a_resync(bus: EventBus) -> None:
    """A browser's Last-Event-ID from before a restart (issue 18 item 2): lower than every id of this
    run, or higher (the clock went back, another installation): None, the caller resyncs."""
    newest = bus.publish(state(1))
    assert bus.replay(newest.id + 1000) is None
    assert bus.replay(newest.id - 1000) is None
    assert bus.replay(5) is None


def test_a_bus_started_later_gives_higher_ids(make_bus: MakeBus, kind: str) -> None:
    """A restarted server numbers its events above the ids its browsers saw before (issue 18 item 2)."""
    if kind == "memory":
        before = make_bus().publish(state(1))
        time.sleep(0.001)
        assert make_bus().publish(state(2)).id > before.id
    else:
        import redis

        first = make_bus()
        before = first.publish(state(1))
        prefix = first._counter_key.rsplit(":events", 1)[0]  # type: ignore[attr-defined]
        # Redis lost everything (restarted without persistence) and so did every server.
        redis.Redis.from_url(REDIS_URL).delete(*(f"{prefix}:events{suffix}" for suffix in ("", ":id", ":epoch")))
        time.sleep(0.001)
        assert make_bus().publish(state(2)).id > before.id


def test_a_memory_bus_replays_its_whole_run_from_zero() -> None:
    bus = MemoryBus(keep=5)
    published = [bus.publish(state(n)) for n in range(5)]
    assert bus.replay(0) == published
    bus.publish(state(6))
    assert bus.replay(0) is None  # its first event is no longer kept


def test_replay_too_far_back_is_none(make_bus: MakeBus) -> None:
    bus = make_bus(keep=5)
    published = [bus.publish(state(n)) for n in range(12)]
    kept = published[-5:]
    assert bus.replay(published[-6].id) == kept  # the oldest kept event is right after it
    assert bus.replay(published[-4].id) == kept[2:]
    assert bus.replay(published[-7].id) is None  # one event in between is gone
    assert bus.replay(0) is None
    assert bus.replay(0, ["job:11"]) is None  # even when the lost events would not have matched


@pytest.mark.parametrize("kind", ["redis"])  # only a bus shared by processes
def test_replay_finds_events_of_every_publisher(make_bus: MakeBus, kind: str) -> None:
    first, second = make_bus(), make_bus()
    published = [first.publish(state(1)), second.publish(state(2)), first.publish(progress(1))]
    start = published[0].id - 1
    assert second.replay(start) == first.replay(start) == published


# -- several processes (Redis) -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["redis"])  # only a bus shared by processes
def test_buses_of_two_processes_share_events_and_one_id_sequence(make_bus: MakeBus, kind: str) -> None:
    one, two = make_bus(), make_bus()  # same prefix: as two server processes would have
    seen_one, seen_two = Collector(), Collector()
    one.subscribe(seen_one)
    two.subscribe(seen_two, ["task:add"])
    published = []
    for n in range(20):
        publisher = one if n % 2 else two
        published.append(publisher.publish(state(n, "add" if n % 3 else "mul")))
    ids = [e.id for e in published]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert one.last_id() == two.last_id() == ids[-1]
    add_events = [e for e in published if e.task == "add"]
    seen_two.wait_for_id(add_events[-1].id)
    seen_one.wait_for_id(ids[-1])
    assert seen_one.events == published
    assert seen_two.events == add_events


@pytest.mark.parametrize("kind", ["redis"])  # only a bus shared by processes
def test_a_process_sees_its_own_events_once_after_others(make_bus: MakeBus, kind: str) -> None:
    mine, other = make_bus(), make_bus()
    seen = Collector()
    mine.subscribe(seen)
    own = mine.publish(state(1))
    foreign = other.publish(state(2))
    last = mine.publish(state(3))
    seen.wait_for_id(last.id)
    assert seen.ids == [own.id, foreign.id, last.id]


@pytest.mark.parametrize("kind", ["redis"])  # the Redis listener thread
def test_callbacks_run_in_the_listener_thread_and_a_failing_one_harms_no_other(
    make_bus: MakeBus, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus()

    def broken(event: Event) -> None:
        raise RuntimeError("a broken subscriber")

    seen = Collector()
    bus.subscribe(broken)
    bus.subscribe(seen)
    first, second = bus.publish(state(1)), bus.publish(state(2))
    seen.wait_for_id(second.id)
    assert seen.ids == [first.id, second.id]
    assert seen.threads == {"mieruka-redis-bus"}
    assert "a broken subscriber" in caplog.text


@pytest.mark.parametrize("kind", ["redis"])  # the Redis listener thread
def test_the_listener_reconnects_and_delivers_what_it_missed(
    make_bus: MakeBus, kind: str, prefix: str, redis_url: str
) -> None:
    import redis

    listener, publisher = make_bus(), make_bus()
    seen = Collector()
    listener.subscribe(seen)
    before = publisher.publish(state(1))
    seen.wait_for_id(before.id)

    admin = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # The bus names its connections; the only subscribed one is the listener's.
        clients = [c for c in admin.client_list(_type="pubsub") if c.get("name") == f"mieruka-bus:{prefix}"]
        assert len(clients) == 1, clients
        admin.client_kill_filter(_id=clients[0]["id"])
    finally:
        admin.close()
    missed = [publisher.publish(state(n)) for n in range(2, 12)]  # while the listener reconnects
    seen.wait_for_id(missed[-1].id)
    after = publisher.publish(state(12))
    seen.wait_for_id(after.id)
    assert seen.events == [before, *missed, after]  # none lost, none twice


# -- close -------------------------------------------------------------------------------------
def test_close_stops_delivery_and_leaves_no_thread(make_bus: MakeBus) -> None:
    threads_before = set(threading.enumerate())
    bus = make_bus()
    seen = Collector()
    bus.subscribe(seen)
    first = bus.publish(state(1))
    seen.wait_for_id(first.id)

    bus.close()
    bus.close()  # twice is harmless
    deadline = time.monotonic() + WAIT
    while (
        left := [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    ) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert left == []
    bus.publish(state(2))  # does not raise, reaches no one
    bus.subscribe(Collector())  # nor does a late subscriber start anything
    assert [t for t in threading.enumerate() if t not in threads_before] == []
    assert seen.ids == [first.id]


def test_redis_being_down_never_raises_into_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    """Events are notifications: with Redis unreachable the engine keeps running jobs, SSE streams
    resync, and the listener keeps retrying until closed."""
    from mieruka.bus.redis import RedisBus  # imports redis only when a RedisBus is made
    from mieruka.errors import MissingExtraError

    threads_before = set(threading.enumerate())
    try:
        bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", "nowhere", ready_timeout=0.3, max_reconnect_delay=0.2)
    except MissingExtraError:
        need_service("the redis package is not installed (pip install 'mieruka[redis]')")
    try:
        seen = Collector()
        unsubscribe = bus.subscribe(seen)  # gives up waiting for the listener after ready_timeout
        event = state(1)
        assert bus.publish(event) is event  # dropped, returned as given: id 0
        bus._publish_paused_until = 0.0  # as if a second had passed
        assert bus.start_publish([event])() == [event]
        assert bus.replay(5) is None  # the caller resyncs
        assert bus.last_id() == 0
        problem = bus.problem()
        assert problem is not None and "Redis" in problem  # /healthz says so
        unsubscribe()
    finally:
        bus.close()
    assert [t for t in threading.enumerate() if t not in threads_before and t.is_alive()] == []
    assert "could not publish" in caplog.text
    assert seen.events == []


class PrivateRedis:
    """A redis-server of this test only, without persistence: a restart loses everything."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            need_service("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + WAIT
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=WAIT)


def test_ids_go_on_above_the_ring_when_redis_lost_only_the_counter(redis_url: str) -> None:
    """An evicted or deleted counter: the next id follows the newest event the ring holds."""
    import redis

    from mieruka.bus.redis import RedisBus

    prefix = f"lostcounter{os.getpid()}"
    bus = RedisBus(redis_url, prefix)
    try:
        ids = [bus.publish(state(n)).id for n in range(4)]
        redis.Redis.from_url(redis_url).delete(f"{prefix}:events:id")
        newcomer = RedisBus(redis_url, prefix)  # knows no ids: only the ring (and the clock) can tell
        try:
            again = newcomer.publish(state(4)).id
            assert again > ids[-1]
            redis.Redis.from_url(redis_url).delete(f"{prefix}:events:id")
            batch = newcomer.publish_many([state(5), state(6)])  # a batch too
            assert batch[0].id > again and batch[1].id == batch[0].id + 1
            assert bus.publish(state(7)).id == batch[1].id + 1
        finally:
            newcomer.close()
    finally:
        redis.Redis.from_url(redis_url).delete(*(f"{prefix}:events{suffix}" for suffix in ("", ":id", ":epoch")))
        bus.close()


def test_start_publish_after_redis_forgot_the_script(redis_url: str, prefix: str) -> None:
    """Redis restarted (or SCRIPT FLUSH): the call in flight answers NOSCRIPT; the events are then
    published the ordinary way, which loads the script again."""
    import redis

    from mieruka.bus.redis import RedisBus

    bus = RedisBus(redis_url, prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        first = bus.publish(state(1))
        client.script_flush()
        announced = bus.start_publish([state(2)])()
        assert [e.id for e in announced] == [first.id + 1]
        assert bus.publish(state(3)).id == first.id + 2
    finally:
        client.delete(*(f"{prefix}:events{suffix}" for suffix in ("", ":id", ":epoch")))
        client.close()
        bus.close()


def test_events_published_together_travel_as_one_message(redis_url: str, prefix: str) -> None:
    """Each listening process reads, parses and dispatches one message for a job's start and end;
    the replay ring still keeps one entry per event."""
    import json

    import redis

    from mieruka.bus.redis import RedisBus

    bus = RedisBus(redis_url, prefix)
    client = redis.Redis.from_url(redis_url)
    raw = client.pubsub()
    try:
        raw.subscribe(f"{prefix}:events:live")
        assert raw.get_message(timeout=WAIT)["type"] == "subscribe"
        published = bus.publish_many([state(1), progress(1), state(1, status="succeeded")])
        alone = bus.publish(state(2))
        messages = [raw.get_message(timeout=WAIT) for _ in range(2)]
        bodies = [json.loads(m["data"]) for m in messages if m is not None]
        assert [[e["id"] for e in bodies[0]], bodies[1]["id"]] == [[e.id for e in published], alone.id]
        assert bus.replay(published[0].id - 1) == [*published, alone]
    finally:
        raw.close()
        client.delete(*(f"{prefix}:events{suffix}" for suffix in ("", ":id", ":epoch")))
        client.close()
        bus.close()


@pytest.mark.parametrize("kind", ["redis"])  # the Redis listener thread
def test_a_redis_restart_that_lost_everything(
    kind: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener reconnects, notices that ids began again, and delivers the new events; a publisher
    that knew the old ids keeps them increasing."""
    from mieruka.bus.redis import RedisBus

    server = PrivateRedis(tmp_path)
    server.start()
    buses: list[RedisBus] = []
    try:
        listener = RedisBus(server.url, "restart", reconnect_delay=0.02, max_reconnect_delay=0.1)
        publisher = RedisBus(server.url, "restart")
        buses += [listener, publisher]
        seen = Collector()
        listener.subscribe(seen)
        before = [publisher.publish(state(n)) for n in range(3)]
        seen.wait_for_id(before[-1].id)

        server.stop()
        server.start()
        newcomer = RedisBus(server.url, "restart")  # a process that never saw the old ids
        buses.append(newcomer)
        fresh = [newcomer.publish(state(n)) for n in range(3, 8)]
        # Ids began again, from the clock: above the old ones though nobody knew them (issue 18 item 2).
        assert [e.id for e in fresh] == list(range(fresh[0].id, fresh[0].id + 5)) and fresh[0].id > before[-1].id
        last = publisher.publish(state(8))
        assert last.id == fresh[-1].id + 1  # the next id after the newest Redis holds
        seen.wait_for_id(last.id)
        assert seen.events == [*before, *fresh, last]
        assert "Redis lost the event ids" in caplog.text
    finally:
        for bus in buses:
            bus.close()
        server.stop()


@pytest.mark.parametrize("kind", ["redis"])  # the Redis listener thread
def test_a_silent_redis_connection_is_replaced(
    kind: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that stays open but answers nothing (a frozen server, a dropped NAT entry) is
    noticed by the listener's pings and replaced; nothing is lost or doubled."""
    from mieruka.bus.redis import RedisBus

    server = PrivateRedis(tmp_path)
    server.start()
    assert server.process is not None
    buses: list[RedisBus] = []
    try:
        listener = RedisBus(server.url, "frozen", liveness_interval=0.1, reconnect_delay=0.02, max_reconnect_delay=0.1)
        publisher = RedisBus(server.url, "frozen")
        buses += [listener, publisher]
        seen = Collector()
        listener.subscribe(seen)
        first = publisher.publish(state(1))
        seen.wait_for_id(first.id)

        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + WAIT
            while "no answer from Redis" not in caplog.text:
                assert time.monotonic() < deadline, "the listener did not notice the silence"
                time.sleep(0.02)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        second = publisher.publish(state(2))
        seen.wait_for_id(second.id)
        assert seen.events == [first, second]
    finally:
        for bus in buses:
            bus.close()
        server.stop()


def test_a_working_bus_reports_no_problem(bus: EventBus) -> None:
    assert bus.problem() is None
