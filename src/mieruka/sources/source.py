"""A declared source: what to read (an adapter), when (a schedule or on demand), within which
limits, and the pandas transform applied to what was read. Sources are named objects."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.dashboards import check_name
from ..core.schedule import Schedule
from ..durations import parse_duration
from ..errors import ConfigError, NotFoundError
from .base import DataSource

if TYPE_CHECKING:
    import pandas as pd

Transform = Callable[["pd.DataFrame"], Any]


@dataclass
class Source:
    name: str
    adapter: DataSource
    schedule: Schedule | None = None  # None: on demand only (and once at start-up)
    timeout: float | None = None  # None: the source_timeout setting
    max_rows: int | None = None  # None: the source_max_rows setting
    transform: Transform | None = None
    title: str = ""
    description: str = ""

    @property
    def interval(self) -> float | None:
        """Seconds between refreshes when they are regular (for the stale badge), else None."""
        return self.schedule.every if self.schedule is not None else None

    def interval_after(self, moment: datetime | None) -> float | None:
        """Seconds from the first due time after `moment` to the next one: the expected age of the
        data at worst (a cron schedule's gaps vary), None for a source refreshed on demand."""
        if self.schedule is None or self.schedule.every is not None or moment is None:
            return self.interval
        first = self.schedule.next_after(moment)
        return (self.schedule.next_after(first) - moment).total_seconds()


def make_source(
    name: str,
    *,
    sql: str | None = None,
    url: str | None = None,
    odbc: str | None = None,
    file: str | os.PathLike[str] | None = None,
    function: Callable[[], Any] | None = None,
    params: Any = None,
    odbc_init: Sequence[str] | str = (),
    every: str | float | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    timeout: str | float | None = None,
    max_rows: int | None = None,
    transform: Transform | None = None,
    title: str = "",
    description: str = "",
    **read_options: Any,
) -> Source:
    """Build a source from keyword options (see `App.source`)."""
    check_name("source", name)
    adapter: DataSource
    if sum(x is not None for x in (sql, file, function)) != 1:
        raise ConfigError(f"source {name!r} needs exactly one of sql= (with url= or odbc=), file= or a function")
    if read_options and file is None:
        raise ConfigError(f"source {name!r}: unknown options {', '.join(sorted(read_options))}")
    if sql is not None:
        adapter = _query_adapter(name, sql, url, odbc, params, odbc_init)
    elif file is not None:
        from .files import FileSource

        adapter = FileSource(file, **read_options)
        if every is None and cron is None:
            every = 1.0  # a stat() a second; the file is read again only when it changed
    else:
        from .function import FunctionSource

        assert function is not None
        adapter = FunctionSource(function)
    schedule = None
    if every is not None or cron is not None:
        schedule = Schedule(every=parse_duration(every), cron=cron, timezone=timezone)
    seconds = parse_duration(timeout)
    if seconds is not None and seconds <= 0:
        raise ConfigError(f"source {name!r}: timeout must be positive")
    if max_rows is not None and max_rows < 1:
        raise ConfigError(f"source {name!r}: max_rows must be at least 1")
    return Source(name, adapter, schedule, seconds, max_rows, transform, title or name.replace("_", " "), description)


def _query_adapter(
    name: str, sql: str, url: str | None, odbc: str | None, params: Any, odbc_init: Sequence[str] | str
) -> DataSource:
    """The adapter of a source that runs `sql`, through SQLAlchemy (url=) or ODBC (odbc=)."""
    if (url is None) == (odbc is None):
        raise ConfigError(
            f"source {name!r}: sql= needs exactly one of url= (SQLAlchemy) or odbc= (an ODBC connection string)"
        )
    if odbc is not None:
        from .odbc import OdbcSource

        if params is not None and not callable(params) and not isinstance(params, (Sequence, dict)):
            raise ConfigError(
                f"source {name!r}: ODBC parameters are a list (? placeholders) or a dict (:name placeholders)"
            )
        return OdbcSource(odbc, sql, params, odbc_init)
    from .sql import SqlSource

    if params is not None and not callable(params) and not isinstance(params, dict):
        raise ConfigError(f"source {name!r}: SQL parameters are a dict for the :name placeholders")
    return SqlSource(str(url), sql, params)


@dataclass
class SourceRegistry:
    _items: dict[str, Source] = field(default_factory=dict)

    def add(self, source: Source) -> None:
        if source.name in self._items:
            raise ConfigError(f"source {source.name!r} is declared twice")
        self._items[source.name] = source

    def get(self, name: str) -> Source:
        try:
            return self._items[name]
        except KeyError:
            raise NotFoundError(f"no source named {name!r}") from None

    def __iter__(self) -> Iterator[Source]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
