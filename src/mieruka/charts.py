"""Charts to put on a dashboard, declared next to their sources.

>>> import mieruka
>>> from mieruka import charts
>>> app = mieruka.App("Wards")
>>> census = app.source("census", sql="SELECT ward, patients FROM census", url="sqlite:///w.db", every="10s")
>>> app.dashboard("wards", [charts.bar(census, x="ward", y="patients"), charts.table(census)])
Dashboard(name='wards', ...)

`source` is a source's name, the `Source` that `app.source(...)` returned, or the function a
decorator declared (a stream for `charts.stream`). Options common to every kind: `title`, `span`
(grid columns taken), `height` (pixels), `name` (the chart's id in URLs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .core.dashboards import Chart, as_tuple

Columns = str | Iterable[str]


def name_of(source: Any) -> str:
    """The declared name of a source or stream given as a name, a `Source` or a decorated function."""
    if isinstance(source, str):
        return source
    declared = (
        getattr(source, "__mieruka_name__", None) or getattr(source, "name", None) or getattr(source, "__name__", None)
    )
    if not isinstance(declared, str):
        raise TypeError(f"cannot tell which source {source!r} is: pass its name")
    return declared


def line(source: Any, x: str, y: Columns, **options: Any) -> Chart:
    """Lines over a time or number axis (uPlot); long series are downsampled on the server."""
    return Chart("line", name_of(source), x=x, y=as_tuple(y), **options)


def area(source: Any, x: str, y: Columns, **options: Any) -> Chart:
    """Filled lines over a time or number axis (uPlot)."""
    return Chart("area", name_of(source), x=x, y=as_tuple(y), **options)


def bar(source: Any, x: str, y: Columns, *, stacked: bool = False, horizontal: bool = False, **options: Any) -> Chart:
    """Bars by category (Chart.js); several y columns are grouped, or `stacked`."""
    return Chart("bar", name_of(source), x=x, y=as_tuple(y), stacked=stacked, horizontal=horizontal, **options)


def pie(source: Any, x: str, y: str, **options: Any) -> Chart:
    """Slices: `x` the labels, `y` the sizes (Chart.js)."""
    return Chart("pie", name_of(source), x=x, y=as_tuple(y), **options)


def doughnut(source: Any, x: str, y: str, **options: Any) -> Chart:
    """A pie with a hole (Chart.js)."""
    return Chart("doughnut", name_of(source), x=x, y=as_tuple(y), **options)


def scatter(source: Any, x: str, y: Columns, **options: Any) -> Chart:
    """Points of two numeric columns (Chart.js)."""
    return Chart("scatter", name_of(source), x=x, y=as_tuple(y), **options)


def table(source: Any, columns: Columns | None = None, *, page_size: int = 20, **options: Any) -> Chart:
    """The rows, sortable by any column and paginated; the whole table downloads as CSV."""
    return Chart("table", name_of(source), columns=as_tuple(columns), page_size=page_size, **options)


def kpi(
    source: Any, value: str | None = None, *, aggregate: str = "last", format: str | None = None, **options: Any
) -> Chart:
    """One number (`aggregate` of the `value` column: last, first, sum, mean, min, max, count) with
    its change since the previous refresh; `format` like "{:.1%}"."""
    return Chart("kpi", name_of(source), value=value, aggregate=aggregate, format=format, **options)


def stream(source: Any, *, window: float = 60.0, **options: Any) -> Chart:
    """A rolling time chart of a stream (uPlot), `window` seconds wide."""
    return Chart("stream", name_of(source), window=window, **options)


__all__ = ["area", "bar", "doughnut", "kpi", "line", "name_of", "pie", "scatter", "stream", "table"]
