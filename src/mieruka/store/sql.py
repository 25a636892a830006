"""The job store on SQLite (WAL, the embedded default) and PostgreSQL: store/base.py's JobStore,
put together from one module per concern on one database.Database.

    jobs.py        the hot path: submit, get, apply (claim, transitions, logs, artifacts), due jobs
    steps.py       pipeline steps
    queries.py     listings and figures
    engines.py     heartbeats and orphaned jobs
    schedules.py   schedules
    retention.py   deleting finished jobs
"""

from __future__ import annotations

from .database import Database, make_engine
from .engines import EngineRecords
from .job_ids import JobIds
from .jobs import JobWrites, claim_sql
from .queries import JobQueries
from .retention import Retention
from .schedules import Schedules
from .steps import StepQueries

__all__ = ["SqlJobStore", "claim_sql", "make_engine"]


class SqlJobStore(JobWrites, StepQueries, JobQueries, EngineRecords, Schedules, Retention):
    """The job store on `db`: a Database shared with the process's other stores, or a URL (then
    the store opens its own connections and closes them in `close`)."""

    def __init__(self, db: Database | str) -> None:
        self._owns_db = isinstance(db, str)
        self.db = Database(db) if isinstance(db, str) else db
        self.url = self.db.url
        self.is_sqlite = self.db.is_sqlite
        self._job_ids = JobIds()
        self._id_sequence: str | None = None  # PostgreSQL: the jobs' id sequence, looked up once

    def migrate(self) -> None:
        self.db.migrate()

    def close(self) -> None:
        if self._owns_db:
            self.db.close()
