"""The recent points of streams, kept in the job store's database so that a restarted server (and
every page reloaded from it) shows the last window instead of an empty chart.

Points are saved in batches, one row per stream a second, and rows older than what the stream's
ring buffer holds are deleted. A restarted server loads them back and continues their sequence
numbers under the same epoch, so a browser that reconnects goes on where it was. A crash loses at
most the last second of points. Saving never stops a stream: a database that fails is reported in
the log and the points are saved once it answers again (as long as the ring buffer still has them).
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..core.clock import utcnow
from ..core.streams import Batch
from ..errors import StorageUnavailable
from ..store.codec import json_out, json_text
from ..store.database import Database
from .streamer import Streamer

log = logging.getLogger("mieruka.streams")
EVERY = 1.0  # seconds between saves
PRUNE_EVERY = 10  # saves between deletions of rows the ring buffer no longer needs
FOREIGN_AGE = timedelta(hours=1)  # rows of another epoch (another server on this database) kept this long

# The newest batch of a stream, and the batches of its epoch that hold its newest `keep` points:
# one statement, so that a save in between cannot pair one batch with another's rows.
_LOAD = (
    "SELECT newest.epoch, newest.last_seq, b.points FROM stream_batches b JOIN "
    "(SELECT epoch, last_seq FROM stream_batches WHERE stream = ? ORDER BY id DESC LIMIT 1) newest "
    "ON b.epoch = newest.epoch WHERE b.stream = ? AND b.last_seq > newest.last_seq - ? ORDER BY b.first_seq"
)
_COLUMNS = "(stream, epoch, first_seq, last_seq, saved_at, points)"
_PRUNE = (
    "DELETE FROM stream_batches WHERE stream = ? AND ((epoch = ? AND last_seq <= ?) OR (epoch <> ? AND saved_at < ?))"
)


def _database_errors() -> tuple[type[Exception], ...]:
    """The errors of a database that failed a statement: sqlite3's, psycopg's (imported by then if
    the database is PostgreSQL), or no connection free."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error, StorageUnavailable) + ((psycopg.Error,) if psycopg is not None else ())


@dataclass
class Restored:
    epoch: str
    last: int
    points: list[tuple[float, dict[str, float | None]]]


class StreamHistory:
    def __init__(self, db: Database | str) -> None:
        """`db`: the process's Database, or a URL to open one of its own (closed by `stop`)."""
        self._owns_db = isinstance(db, str)
        self._db = Database(db) if isinstance(db, str) else db
        self._saved: dict[str, int] = {}  # stream -> last sequence number saved
        self._failing = False
        self._saves = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streamers: list[Streamer] = []

    # -- loading --------------------------------------------------------------------------------
    def load(self, stream: str, keep: int) -> Restored | None:
        """The newest `keep` points saved for `stream` with their epoch, or None when there are none."""
        db = self._db
        with db.cursor() as cur:
            cur.execute(db.sql(_LOAD), (stream, stream, keep))
            rows = cur.fetchall()
        if not rows:
            return None
        epoch, last = str(rows[0][0]), int(rows[0][1])
        points: list[tuple[float, dict[str, float | None]]] = []
        for row in rows:
            data: dict[str, Any] = json_out(row[2])
            series: dict[str, list[float | None]] = data["series"]
            for i, t in enumerate(data["t"]):
                points.append((float(t), {name: values[i] for name, values in series.items() if values[i] is not None}))
        return Restored(epoch, last, points[-keep:])

    def restore(self, streamers: Iterable[Streamer]) -> None:
        """Fill each streamer's empty buffer from the database and take its epoch."""
        for streamer in streamers:
            try:
                found = self.load(streamer.spec.name, streamer.spec.capacity)
            except _database_errors() as exc:
                log.warning(
                    "stream %s: the points of the last run cannot be read: %s",
                    streamer.spec.name,
                    str(exc).splitlines()[0],
                )
                continue
            if found is not None:
                streamer.buffer.restore(found.last, found.points)
                streamer.boot = found.epoch
            self._saved[streamer.spec.name] = streamer.buffer.last

    # -- saving ---------------------------------------------------------------------------------
    def start(self, streamers: Iterable[Streamer]) -> None:
        self._streamers = list(streamers)
        for streamer in self._streamers:
            self._saved.setdefault(streamer.spec.name, streamer.buffer.last)
        self._thread = threading.Thread(target=self._loop, name="mieruka-stream-history", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(EVERY):
            self.save()

    def save(self) -> None:
        """Save what each stream produced since the last save (one row per stream)."""
        self._saves += 1
        prune = self._saves % PRUNE_EVERY == 0
        db = self._db
        values: list[Any] = []
        batches: dict[str, Batch] = {}
        for streamer in self._streamers:
            batch = streamer.buffer.since(self._saved.get(streamer.spec.name, 0))
            if batch is not None:
                batches[streamer.spec.name] = batch
                points = json_text({"t": batch.t, "series": batch.series})
                values += [streamer.spec.name, streamer.boot, batch.first, batch.last, db.codec.time(utcnow()), points]
        if not batches and not prune:
            return
        try:
            # The insert is one statement (a row per stream): alone, it is its own transaction.
            with db.write_cursor(single=not prune) as cur:
                if batches:
                    rows = ", ".join("(?, ?, ?, ?, ?, ?)" for _ in batches)
                    cur.execute(db.sql(f"INSERT INTO stream_batches {_COLUMNS} VALUES {rows}"), values)
                if prune:
                    for streamer in self._streamers:
                        old = streamer.buffer.last - streamer.spec.capacity
                        foreign = db.codec.time(utcnow() - FOREIGN_AGE)
                        cur.execute(db.sql(_PRUNE), (streamer.spec.name, streamer.boot, old, streamer.boot, foreign))
        except _database_errors() as exc:
            if not self._failing:
                log.warning(
                    "the points of streams cannot be saved (they will be once the database answers): %s",
                    str(exc).splitlines()[0],
                )
            self._failing = True
            return
        self._failing = False
        for name, batch in batches.items():
            self._saved[name] = batch.last

    def stop(self) -> None:
        """Save what is left, then close."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.save()
        if self._owns_db:
            self._db.close()
