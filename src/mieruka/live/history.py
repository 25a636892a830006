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
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..core.clock import utcnow
from ..core.streams import Batch
from ..store.database import Database
from ..store.tables import stream_batches as table
from .streamer import Streamer

log = logging.getLogger("mieruka.streams")
EVERY = 1.0  # seconds between saves
PRUNE_EVERY = 10  # saves between deletions of rows the ring buffer no longer needs
FOREIGN_AGE = timedelta(hours=1)  # rows of another epoch (another server on this database) kept this long


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
        c = table.c
        with self._db.read() as conn:
            newest = conn.execute(
                sa.select(c.epoch, c.last_seq).where(c.stream == stream).order_by(c.id.desc()).limit(1)
            ).first()
            if newest is None:
                return None
            epoch, last = str(newest.epoch), int(newest.last_seq)
            rows = conn.execute(
                sa.select(c.first_seq, c.points)
                .where(c.stream == stream, c.epoch == epoch, c.last_seq > last - keep)
                .order_by(c.first_seq)
            ).all()
        points: list[tuple[float, dict[str, float | None]]] = []
        for row in rows:
            data: dict[str, Any] = row.points
            series: dict[str, list[float | None]] = data["series"]
            for i, t in enumerate(data["t"]):
                points.append((float(t), {name: values[i] for name, values in series.items() if values[i] is not None}))
        return Restored(epoch, last, points[-keep:])

    def restore(self, streamers: Iterable[Streamer]) -> None:
        """Fill each streamer's empty buffer from the database and take its epoch."""
        for streamer in streamers:
            try:
                found = self.load(streamer.spec.name, streamer.spec.capacity)
            except sa.exc.SQLAlchemyError as exc:
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
        rows: list[dict[str, Any]] = []
        batches: dict[str, Batch] = {}
        for streamer in self._streamers:
            batch = streamer.buffer.since(self._saved.get(streamer.spec.name, 0))
            if batch is not None:
                batches[streamer.spec.name] = batch
                rows.append(
                    {
                        "stream": streamer.spec.name,
                        "epoch": streamer.boot,
                        "first_seq": batch.first,
                        "last_seq": batch.last,
                        "saved_at": utcnow(),
                        "points": {"t": batch.t, "series": batch.series},
                    }
                )
        if not rows and not prune:
            return
        c = table.c
        try:
            with self._db.write() as conn:
                if rows:
                    conn.execute(sa.insert(table), rows)
                if prune:
                    for streamer in self._streamers:
                        old = streamer.buffer.last - streamer.spec.capacity
                        conn.execute(
                            sa.delete(table).where(
                                c.stream == streamer.spec.name,
                                sa.or_(
                                    sa.and_(c.epoch == streamer.boot, c.last_seq <= old),
                                    sa.and_(c.epoch != streamer.boot, c.saved_at < utcnow() - FOREIGN_AGE),
                                ),
                            )
                        )
        except sa.exc.SQLAlchemyError as exc:
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
