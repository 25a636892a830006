"""A chart's tile: the JSON a browser draws, computed from a source's state once per refresh.

Every viewer gets the same tile, so its cost does not depend on how many people look. Times on
x axes are sent as epoch seconds (the browser shows them in the configured time zone); times in
tables and category labels are formatted here, in that zone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..core.controls import Control
from ..core.dashboards import Chart
from ..i18n import Localized
from ..notes import Note, note
from ..sources.frames import pandas
from . import downsample

if TYPE_CHECKING:
    import pandas as pd

    from ..sources.refresher import SourceState
    from ..sources.source import Source

TABLE_ROWS = 1000  # rows a table tile carries; the whole table is a CSV download away
CATEGORIES = 500  # bars or slices a categorical chart carries at most
SCATTER_POINTS = 5000
PIXELS = 600  # the width of a one-column tile, roughly; two points per pixel are kept


def translations_of(text: str) -> dict[str, str] | None:
    """An author's text given per language, by language (beside its English text: the tile is the
    same for every reader); None for one text in every language."""
    return dict(text.translations) if isinstance(text, Localized) else None


class TileError(Exception):
    """The chart cannot be drawn from this table (e.g. a missing column)."""


def tile(
    chart: Chart | Control, source: Source, state: SourceState, zone: ZoneInfo, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    if isinstance(chart, Control):
        return state_tile(chart, source, state, zone)
    payload: dict[str, Any] = {
        "chart": chart.name,
        "kind": chart.kind,
        "library": chart.library,
        "title": chart.title,
        "titles": translations_of(chart.title),
        "source": source.name,
        "version": state.version,
        "attempts": state.attempts,
        "refreshed_at": _iso(state.refreshed_at),
        "attempted_at": _iso(state.attempted_at),
        "interval": source.interval_after(state.refreshed_at),
        "error": state.error,
        "error_at": _iso(state.error_at),
        "running": state.running,
        "rows": state.rows,
        "truncated": state.truncated,
        "warning": source.adapter.warning(),
        "data": None,
    }
    if state.frame is None:
        return payload
    if previous is not None:
        # The same refresh drawn again (e.g. its error announced): a KPI keeps the change it had.
        previous = {**previous, "_version_now": state.version}
    try:
        payload.update(_draw(chart, state.frame, zone, previous))
    except TileError as exc:
        why = exc.args[0]
        payload["error"] = why if not state.error else f"{state.error}; {why}"
    return payload


def state_tile(control: Control, source: Source, state: SourceState, zone: ZoneInfo) -> dict[str, Any]:
    """A control's state: the value in its column of the table's last row (None when there is none)."""
    payload: dict[str, Any] = {
        "chart": control.name,
        "kind": "state",
        "control": control.name,
        "source": source.name,
        "column": control.column,
        "version": state.version,
        "attempts": state.attempts,
        "refreshed_at": _iso(state.refreshed_at),
        "error": state.error,
        "value": None,
    }
    frame = state.frame
    if frame is None:
        return payload
    if control.column not in frame.columns:
        payload["error"] = _no_column([control.column], frame)
    elif len(frame):
        payload["value"] = _cell(frame[control.column].iloc[-1], zone)
    return payload


def _draw(chart: Chart, frame: pd.DataFrame, zone: ZoneInfo, previous: dict[str, Any] | None) -> dict[str, Any]:
    needed = [c for c in (chart.x, chart.value, *chart.y, *chart.columns) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TileError(_no_column(missing, frame))
    if chart.kind in ("line", "area"):
        return _series(chart, frame, zone)
    if chart.kind in ("bar", "pie", "doughnut"):
        return {"data": _categories(chart, frame, zone)}
    if chart.kind == "scatter":
        return {"data": _scatter(chart, frame)}
    if chart.kind == "table":
        return {"data": _table(chart, frame, zone)}
    prev: float | None = None
    if previous is not None and previous.get("data"):
        same_refresh = previous.get("version") == previous.get("_version_now")
        prev = previous["data"]["previous"] if same_refresh else previous["data"]["value"]
    return {"data": _kpi(chart, frame, prev)}


def _no_column(missing: list[str], frame: pd.DataFrame) -> Note:
    return note("tile.no_column", missing=", ".join(map(repr, missing)), columns=", ".join(map(str, frame.columns)))


def _series(chart: Chart, frame: pd.DataFrame, zone: ZoneInfo) -> dict[str, Any]:
    pd = pandas()
    assert chart.x is not None
    x = frame[chart.x]
    seconds = _epoch_seconds(x)
    if seconds is None and not pd.api.types.is_numeric_dtype(x):
        # Categories along x: a Chart.js line over labels.
        data = _categories(chart, frame, zone)
        return {"library": "chartjs", "data": data}
    xs = (seconds if seconds is not None else pd.to_numeric(x, errors="coerce")).astype("float64")
    ys = [pd.to_numeric(frame[c], errors="coerce").astype("float64") for c in chart.y]
    table = pd.DataFrame({"__x": xs.to_numpy(), **{f"__y{i}": y.to_numpy() for i, y in enumerate(ys)}})
    table = table.dropna(subset=["__x"]).sort_values("__x", kind="stable")
    total = len(table)
    n_out = chart.points or 2 * PIXELS * chart.span
    keep = downsample.indices(table["__x"].to_numpy(), [table[f"__y{i}"].to_numpy() for i in range(len(ys))], n_out)
    table = table.iloc[keep]
    return {
        "data": {
            "time": seconds is not None,
            "x": _clean(table["__x"].to_numpy().tolist()),
            "series": [
                {"name": name, "values": _clean(table[f"__y{i}"].to_numpy().tolist())} for i, name in enumerate(chart.y)
            ],
            "total": total,
            "shown": len(table),
        }
    }


def _categories(chart: Chart, frame: pd.DataFrame, zone: ZoneInfo) -> dict[str, Any]:
    pd = pandas()
    assert chart.x is not None
    part = frame.iloc[:CATEGORIES]
    labels = [_label(v, zone) for v in part[chart.x].tolist()]
    series = [
        {"name": c, "values": _clean(pd.to_numeric(part[c], errors="coerce").astype("float64").tolist())}
        for c in chart.y
    ]
    return {
        "labels": labels,
        "series": series,
        "total": len(frame),
        "shown": len(part),
        "stacked": chart.stacked,
        "horizontal": chart.horizontal,
    }


def _scatter(chart: Chart, frame: pd.DataFrame) -> dict[str, Any]:
    pd = pandas()
    assert chart.x is not None
    step = max(1, math.ceil(len(frame) / SCATTER_POINTS))
    part = frame.iloc[::step]
    x = pd.to_numeric(part[chart.x], errors="coerce").astype("float64").tolist()
    return {
        "series": [
            {"name": c, "x": _clean(x), "y": _clean(pd.to_numeric(part[c], errors="coerce").astype("float64").tolist())}
            for c in chart.y
        ],
        "total": len(frame),
        "shown": len(part),
    }


def _table(chart: Chart, frame: pd.DataFrame, zone: ZoneInfo) -> dict[str, Any]:
    columns = list(chart.columns) or [str(c) for c in frame.columns]
    part = frame[columns].iloc[:TABLE_ROWS] if chart.columns else frame.iloc[:TABLE_ROWS]
    rows = [[_cell(v, zone) for v in row] for row in part.itertuples(index=False, name=None)]
    return {"columns": columns, "rows": rows, "total": len(frame), "page_size": chart.page_size}


def _kpi(chart: Chart, frame: pd.DataFrame, prev: float | None) -> dict[str, Any]:
    pd = pandas()
    value: float | None
    if chart.aggregate == "count":
        value = float(len(frame))
    else:
        assert chart.value is not None
        column = pd.to_numeric(frame[chart.value], errors="coerce").dropna()
        if column.empty:
            value = None
        else:
            value = float(
                column.iloc[-1]
                if chart.aggregate == "last"
                else column.iloc[0]
                if chart.aggregate == "first"
                else getattr(column, chart.aggregate)()
            )
    value = value if value is None or math.isfinite(value) else None
    change = None if value is None or prev is None else value - prev
    pct = None if change is None or not prev else change / abs(prev)
    return {
        "value": value,
        "text": _format(value, chart.format),
        "previous": prev,
        "change": change,
        "change_pct": pct,
        "change_text": None if change is None else ("+" if change > 0 else "") + _format(change, chart.format),
    }


def _format(value: float | None, fmt: str | None) -> str:
    if value is None:
        return "–"
    if fmt:
        return fmt.format(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _epoch_seconds(column: pd.Series) -> pd.Series | None:
    """Seconds since the epoch for a time column (naive times are UTC), None when it is not one."""
    pd = pandas()
    if pd.api.types.is_datetime64_any_dtype(column):
        values = column if getattr(column.dt, "tz", None) is not None else column.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    else:
        sample = column.dropna()
        if sample.empty or not isinstance(sample.iloc[0], str) and not hasattr(sample.iloc[0], "isoformat"):
            return None
        try:
            values = pd.to_datetime(column, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            return None
    result: Any = (values - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return result


def _label(value: Any, zone: ZoneInfo) -> str:
    if hasattr(value, "astimezone") and hasattr(value, "hour"):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo("UTC"))
        return str(moment.astimezone(zone).strftime("%Y-%m-%d %H:%M"))
    return "" if value is None else str(value)


def _cell(value: Any, zone: ZoneInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "astimezone") and hasattr(value, "hour"):
        if value != value:  # NaT
            return None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo("UTC"))
        return str(moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"))
    item = getattr(value, "item", None)  # numpy scalars
    if item is not None:
        return _cell(item(), zone)
    return str(value)


def _clean(values: list[Any]) -> list[Any]:
    return [None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v for v in values]


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
