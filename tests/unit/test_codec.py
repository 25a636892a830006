"""What the store reads without SQLAlchemy (the jobs columns, times, the SQLite file of a URL), against
what SQLAlchemy makes of them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mieruka.store import codec
from mieruka.store import tables as t
from mieruka.store.database import sqlite_path


def _kind(column: sa.Column[object]) -> str:
    if isinstance(column.type, t.UTCDateTime):
        return "time"
    if isinstance(column.type, sa.JSON):
        return "json"
    return "plain"


def test_the_codec_knows_the_jobs_columns_in_their_order_and_kinds() -> None:
    assert tuple((c.name, _kind(c)) for c in t.jobs.c) == codec.JOB_KINDS


def test_a_time_column_stores_naive_utc_and_reads_aware_utc() -> None:
    column = t.UTCDateTime()
    dialect = sa.create_engine("sqlite://").dialect
    tokyo = datetime(2026, 12, 7, 18, 30, tzinfo=timezone(timedelta(hours=9)))
    stored = column.process_bind_param(tokyo, dialect)
    assert stored == datetime(2026, 12, 7, 9, 30)
    assert column.process_result_value(stored, dialect) == tokyo
    assert codec.time_out("2026-12-07 09:30:00.000000") == tokyo
    with pytest.raises(ValueError, match="naive"):
        column.process_bind_param(datetime(2026, 12, 7, 9, 30), dialect)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///rel/x.db",
        "sqlite:////abs/x.db",
        "sqlite:///x.db?timeout=3",
        "sqlite:///%C3%A9.db",
        "sqlite:////tmp/a b/x.db",
    ],
)
def test_the_sqlite_file_of_a_url_is_sqlalchemys(url: str) -> None:
    assert sqlite_path(url) == (make_url(url).database or ":memory:")
