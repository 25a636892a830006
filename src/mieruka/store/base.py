"""The job store interface. `SqlJobStore` implements it for SQLite and PostgreSQL; the contract
tests in tests/contracts/test_store_contract.py run against every implementation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..core.job import ArtifactInfo, JobRecord
from ..core.status import JobStatus
from ..core.steps import StepRecord, StepStatus


@dataclass(frozen=True)
class NewJob:
    task: str
    params: dict[str, Any]
    max_attempts: int = 1
    priority: int = 0
    queue: str = "default"
    owner: str | None = None
    idempotency_key: str | None = None
    run_after: datetime | None = None
    schedule: str | None = None
    # The uploads its parameters name: each must be unowned (then it becomes the job owner's) or
    # the job owner's; recorded with the job so that a file is deleted only with its last job.
    uploads: tuple[str, ...] = ()


class ForeignUploads(Exception):
    """A job named uploads that belong to another owner; nothing was stored."""

    def __init__(self, upload_ids: Sequence[str]) -> None:
        super().__init__(f"uploads of another owner: {', '.join(upload_ids)}")
        self.upload_ids = list(upload_ids)


@dataclass(frozen=True)
class Deleted:
    """What a deletion removed: jobs, and the uploads no job uses any more (their files go too)."""

    job_ids: list[int] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PendingJob:
    """A queued job whose row is on its way to the store: its record, id included, is known now.
    `finish` waits until the row is stored and raises the store's error if it was not."""

    record: JobRecord
    finish: Callable[[], None]


@dataclass(frozen=True)
class Transition:
    """Move `job_id` to `to` if it is in one of the states `expect` (and, given `attempt`, still
    on that attempt), setting `fields` too. `read_back`: return the job as it stands afterwards
    (in `Applied.after`), read by the same statement."""

    job_id: int
    to: JobStatus
    expect: frozenset[JobStatus]
    fields: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None
    read_back: bool = False


@dataclass(frozen=True)
class ProgressUpdate:
    job_id: int
    progress: float | None
    message: str | None


@dataclass(frozen=True)
class LogAppend:
    """Lines as (time, stream, text), numbered from `first_seq` by whoever runs the job."""

    job_id: int
    first_seq: int
    lines: Sequence[tuple[datetime, str, str]]
    step: str | None = None  # the pipeline step that wrote them


@dataclass(frozen=True)
class ArtifactAdded:
    job_id: int
    artifact: ArtifactInfo


@dataclass(frozen=True)
class StepsPlanned:
    """The steps of a pipeline attempt, replacing the job's earlier ones (reused steps keep
    their state and outputs in `steps`)."""

    job_id: int
    steps: Sequence[StepRecord]


@dataclass(frozen=True)
class StepSaved:
    """Insert or update one step as a whole (Snakemake rule executions appear as they run)."""

    step: StepRecord


@dataclass(frozen=True)
class StepsClosed:
    """Every pending or running step of the job moves to `to`: the job ended without its worker
    settling them (cancelled, timed out, the worker died)."""

    job_id: int
    to: StepStatus


Change = Transition | ProgressUpdate | LogAppend | ArtifactAdded | StepsPlanned | StepSaved | StepsClosed


@dataclass(frozen=True)
class Claim:
    """Move these queued jobs to running for an engine (those still queued and due at `now`: the
    rest are skipped)."""

    job_ids: Sequence[int]
    worker: str
    engine_id: str
    now: datetime
    # (task, n): claim only while fewer than n jobs of that task run, counted inside the claim's
    # transaction so that workers claiming at once never exceed it.
    task_limit: tuple[str, int] | None = None


@dataclass(frozen=True)
class Applied:
    done: list[bool]  # for each change, whether it took effect
    claimed: list[JobRecord]  # the jobs won by the claim, now running
    # by index in the changes, for each Transition with `read_back` that took effect: the job after it
    after: dict[int, JobRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class QueuedJob:
    """Just enough of a queued job to decide when to run it."""

    id: int
    priority: int
    task: str


@dataclass(frozen=True)
class QueueStats:
    queue: str
    queued: int
    running: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class EngineInfo:
    """A process that runs jobs (a server's engine, a Celery worker), as it last reported."""

    id: str
    host: str
    pid: int
    heartbeat_at: datetime
    info: dict[str, Any]
    running: list[int]  # ids of the jobs it runs now


@dataclass(frozen=True)
class TimelineBucket:
    """Jobs that finished in one interval: how many, by final state, and how long they waited
    (created to started) and ran (started to finished), in seconds."""

    start: datetime
    finished: dict[str, int]
    wait_avg: float | None
    wait_max: float | None
    run_avg: float | None
    run_max: float | None


@dataclass(frozen=True)
class LogLine:
    seq: int
    at: datetime
    stream: str
    text: str
    step: str | None = None


@dataclass(frozen=True)
class JobQuery:
    task: str | None = None
    status: Sequence[JobStatus] = ()
    owner: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    search: str | None = None
    before_id: int | None = None  # cursor: jobs with a smaller id (newest first)
    limit: int = 50
    hidden_tasks: frozenset[str] = frozenset()  # jobs of these tasks are left out (allow lists)


# More rows in a new job's own transaction: `along(cursor, job)` writes them on the store's DB-API
# cursor ("?" placeholders through Database.sql), e.g. the audit entry of the request that submits it.
Along = Callable[[Any, JobRecord], None]


class WouldWait(Exception):
    """A read asked to answer at once would have had to wait: for a lock, or a round trip over the network."""


class JobStore(Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema to the newest version."""

    def create_job(self, job: NewJob, along: Along | None = None) -> tuple[JobRecord, bool]:
        """Insert a queued job and record its uploads; if its owner already has a job of its task
        with its idempotency key, return that job and False. ForeignUploads if an upload is another
        owner's (owner None, the open mode, is an owner too). `along` writes more rows in the new
        job's transaction (not for a job that was there already); if it fails, no job is stored."""

    def start_create_job(self, job: NewJob) -> PendingJob | None:
        """Start inserting a queued job without an idempotency key or uploads and return at once,
        its id known; None where a store cannot (then `create_job` it)."""

    def get_job(self, job_id: int) -> JobRecord | None:
        """One job with its artifacts, or None."""

    def get_job_now(self, job_id: int) -> JobRecord | None:
        """get_job for a caller that must not block (the event loop): answered from a database file
        on this machine without waiting for its lock, else WouldWait (another process writes
        there, or the database is a server away)."""

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        """Jobs matching `query`, newest first, at most `query.limit`."""

    def apply(self, changes: Sequence[Change], claim: Claim | None = None) -> Applied:
        """Apply changes, then the claim, in one transaction."""

    def read_logs(self, job_id: int, after: int = 0, limit: int = 1000, step: str | None = None) -> list[LogLine]:
        """Log lines with seq > after, oldest first; given `step`, only that pipeline step's lines."""

    def list_steps(self, job_id: int) -> list[StepRecord]:
        """The pipeline steps of a job in plan order (empty for an ordinary job)."""

    def due_jobs(self, now: datetime, limit: int, queues: Sequence[str] | None = None) -> list[QueuedJob]:
        """Queued jobs whose run_after has passed, highest priority then oldest first."""

    def next_due_time(self) -> datetime | None:
        """The earliest run_after of a queued job, if any waits for a time."""

    def cancels_requested(self) -> list[int]:
        """The running jobs whose cancellation was asked for (by any process), by id."""

    def heartbeat(self, engine_id: str, host: str, pid: int, now: datetime, info: dict[str, Any] | None = None) -> None:
        """Record that an engine is alive (and, given `info`, what it is)."""

    def engines(self) -> list[EngineInfo]:
        """Every engine that has not stopped cleanly, with the jobs it runs, newest beat first."""

    def remove_engine(self, engine_id: str) -> None:
        """An engine stopped cleanly."""

    def orphaned_jobs(self, now: datetime, stale_after: float, is_dead: Callable[[str, int], bool]) -> list[JobRecord]:
        """Running jobs whose engine stopped beating or is known dead (host, pid)."""

    def fire_schedule(
        self, name: str, due: datetime, next_due: datetime, job: NewJob | None, missed: str | None = None
    ) -> JobRecord | None:
        """Move schedule `name` from `due` to `next_due` and queue `job`; None if another got it.
        `missed`: the run is late (the server was down), said so in a notification event written
        in the same transaction when a rule asks for it."""

    def schedule_due(self, name: str, first_due: datetime) -> datetime:
        """The schedule's next due time, created as `first_due` if it is new."""

    def prune(self, task: str, older_than: datetime | None, keep: int | None) -> Deleted:
        """Delete finished jobs of `task` beyond the retention policy, as `delete_job` does."""

    def finished_span(self, up_to: int) -> tuple[int, datetime | None]:
        """How many jobs are finished, all tasks together (counted up to `up_to + 1`), and when the
        oldest of them finished: what retention needs to tell that no task has any to prune."""

    def delete_job(self, job_id: int) -> Deleted:
        """Delete a finished job and its logs, artifact and upload records (no job_ids if none was
        deleted); the uploads no other job uses are forgotten and returned."""

    def count_by_status(self, active_only: bool = False) -> dict[str, int]:
        """Number of jobs in each state (a scan of the table), or with `active_only` in each of
        queued and running (an index answers)."""

    def queue_stats(self) -> list[QueueStats]:
        """For each queue with active jobs: how many wait, how many run, since when the oldest waits."""

    def timeline(self, since: datetime, bucket_seconds: int = 60) -> list[TimelineBucket]:
        """Jobs finished since `since`, per interval of `bucket_seconds`, oldest first; only
        intervals in which some job finished."""

    def close(self) -> None:
        """Release connections."""
