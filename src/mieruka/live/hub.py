"""The live side of an app: sources refreshed by the refresher, each chart's tile computed once per
refresh and kept as ready-to-send text, stream producers running; open event streams wait on
signals and send what is new. Page views and event streams never cause a query.

Tiles and stream points do not travel on the job event bus: a 50 Hz stream would push job events
out of the bus's resume window within minutes, and a tile is state (the newest one replaces the
others), not a sequence of events to replay. Each client keeps only how far it has read.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from ..core.controls import Control
from ..core.dashboards import Chart, Dashboard, DashboardRegistry
from ..core.streams import StreamSpec
from ..errors import ConfigError, NotFoundError
from ..notes import json_of
from ..settings import Settings
from ..sources.refresher import Refresher, SourceState
from ..sources.source import Source, SourceRegistry
from ..store.database import Database
from .history import StreamHistory
from .signal import Signal
from .streamer import Streamer
from .tiles import tile

log = logging.getLogger("mieruka.live")


class Live:
    def __init__(
        self,
        sources: SourceRegistry,
        dashboards: DashboardRegistry,
        streams: Iterable[StreamSpec],
        settings: Settings,
        database: Database | None = None,
    ) -> None:
        self.sources = sources
        self.dashboards = dashboards
        self.zone = settings.zone
        self.refresher = Refresher(sources, settings.source_timeout, settings.source_max_rows)
        # Sequence numbers start again with each server start: the boot id tells a browser that
        # reconnects to a restarted server to drop what it had instead of waiting for higher numbers.
        self.boot = uuid.uuid4().hex[:12]
        self.streams = {spec.name: Streamer(spec, self.boot) for spec in streams}
        # The last window of each stream outlives the server, in the job store's database.
        self.history = StreamHistory(database or settings.effective_database_url) if self.streams else None
        self._lock = threading.Lock()
        self._seq = 0
        self._tiles: dict[tuple[str, str], tuple[int, dict[str, Any], str]] = {}
        self._signals = {d.name: Signal() for d in dashboards}
        self._check()
        for dashboard in dashboards:
            for chart in dashboard.tiled:
                source = sources.get(chart.source)
                self._store(dashboard, chart, tile(chart, source, SourceState(source.name), self.zone))
        self.refresher.listen(self._on_source)

    def _check(self) -> None:
        for dashboard in self.dashboards:
            for chart in dashboard.watched:
                known = self.streams if chart.is_stream else self.sources
                if chart.source not in known:
                    what = "stream" if chart.is_stream else "source"
                    item = "control" if isinstance(chart, Control) else "chart"
                    raise ConfigError(
                        f"dashboard {dashboard.name!r}, {item} {chart.name!r}: no {what} named {chart.source!r}"
                    )

    def start(self) -> None:
        self.refresher.start()
        if self.history is not None:
            self.history.restore(self.streams.values())
            self.history.start(self.streams.values())
        for streamer in self.streams.values():
            streamer.start()

    def stop(self) -> None:
        for streamer in self.streams.values():
            streamer.stop()
        if self.history is not None:
            self.history.stop()
        self.refresher.stop()
        for signal in self._signals.values():
            signal.fire()

    # -- tiles ----------------------------------------------------------------------------------
    def _on_source(self, source: Source, state: SourceState) -> None:
        for dashboard in self.dashboards:
            touched = False
            for chart in dashboard.tiled:
                if chart.source != source.name:
                    continue
                with self._lock:
                    old = self._tiles.get((dashboard.name, chart.key))
                previous = old[1] if old else None
                if previous is not None and previous["attempts"] > state.attempts:
                    continue  # an older announcement arriving late
                self._store(dashboard, chart, tile(chart, source, state, self.zone, previous))
                touched = True
            if touched:
                self._signals[dashboard.name].fire()

    def _store(self, dashboard: Dashboard, chart: Chart | Control, payload: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            payload["seq"] = self._seq
            payload["boot"] = self.boot
            payload["error_note"] = json_of(payload.get("error"))  # said in the reader's language
            body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str)
            text = f"event: tile\ndata: {body}\n\n"
            self._tiles[(dashboard.name, chart.key)] = (self._seq, payload, text)

    def tiles(self, dashboard: str) -> list[dict[str, Any]]:
        board = self.dashboards.get(dashboard)
        with self._lock:
            return [self._tiles[(board.name, c.key)][1] for c in board.tiled]

    def tile_frames(self, dashboard: str, seen: dict[str, int]) -> list[str]:
        """The SSE text of the tiles changed since `seen` (chart -> seq), which is updated."""
        board = self.dashboards.get(dashboard)
        out: list[str] = []
        with self._lock:
            for chart in board.tiled:
                entry = self._tiles.get((board.name, chart.key))
                if entry is not None and entry[0] > seen.get(chart.key, 0):
                    seen[chart.key] = entry[0]
                    out.append(entry[2])
        return out

    def signal(self, dashboard: str) -> Signal:
        return self._signals[self.dashboards.get(dashboard).name]

    def stream(self, name: str) -> Streamer:
        try:
            return self.streams[name]
        except KeyError:
            raise NotFoundError(f"no stream named {name!r}") from None
