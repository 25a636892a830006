"""Declarations of charts and dashboards: what to draw from which source, nothing about drawing.

A dashboard is a titled grid of charts and controls (core/controls.py). Each chart names a source
(a table refreshed on the server) or a stream (a rolling series pushed live), and the columns it
reads. Dashboards, sources and streams are named objects, so access rules can be attached to them by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from ..errors import ConfigError, NotFoundError
from ..i18n import _, text
from .controls import Control

# Which browser library draws each kind: uPlot for series over a numeric or time axis (it streams at
# a fraction of Chart.js's CPU), Chart.js for categorical charts, plain HTML for tables and numbers.
KINDS = {
    "line": "uplot",
    "area": "uplot",
    "stream": "uplot",
    "bar": "chartjs",
    "pie": "chartjs",
    "doughnut": "chartjs",
    "scatter": "chartjs",
    "table": "html",
    "kpi": "html",
}
AGGREGATES = ("last", "first", "sum", "mean", "min", "max", "count")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise ConfigError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-' and '.'")
    return name


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


@dataclass(frozen=True)
class Chart:
    """One tile of a dashboard. `source` names a source, or a stream for kind "stream".

    `x` is the category or time column; `y` the value columns (one series each). Bar charts can be
    `stacked`; `horizontal` bars lie down. A KPI shows `aggregate` of the `value` column with its
    change since the previous refresh, formatted with `format` (e.g. "{:.1%}"). A table shows
    `columns` (all when empty), `page_size` rows a page. `span` is the number of grid columns the
    tile takes; `points` the most points a series is downsampled to (0: about two per pixel of
    the tile's width)."""

    kind: str
    source: str
    title: str = ""
    x: str | None = None
    y: tuple[str, ...] = ()
    stacked: bool = False
    horizontal: bool = False
    value: str | None = None
    aggregate: str = "last"
    format: str | None = None
    columns: tuple[str, ...] = ()
    page_size: int = 20
    span: int = 1
    points: int = 0
    height: int = 260
    window: float = 60.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown chart kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"unknown KPI aggregate {self.aggregate!r}; one of {', '.join(AGGREGATES)}")
        if self.kind == "kpi" and not self.value and self.aggregate != "count":
            raise ConfigError("a KPI needs value= (the column it shows)")
        if self.kind in ("line", "area", "bar", "scatter", "pie", "doughnut") and (not self.x or not self.y):
            raise ConfigError(f"a {self.kind} chart needs x= and y=")
        if self.kind in ("pie", "doughnut") and len(self.y) != 1:
            raise ConfigError(f"a {self.kind} chart shows one value column: y='column'")
        if self.page_size < 1 or self.span < 1 or self.points < 0 or self.height < 50 or self.window <= 0:
            raise ConfigError("page_size and span must be >= 1, points >= 0, height >= 50, window > 0")
        if self.format is not None:
            try:
                self.format.format(1.5)
            except (ValueError, IndexError, KeyError):
                raise ConfigError(f"invalid format {self.format!r}: use e.g. '{{:,.0f}}' or '{{:.1%}}'") from None

    @property
    def library(self) -> str:
        return KINDS[self.kind]

    @property
    def key(self) -> str:
        """The chart's tile among the dashboard's tiles."""
        return self.name

    @property
    def is_stream(self) -> bool:
        return self.kind == "stream"


@dataclass(frozen=True)
class Dashboard:
    """A titled grid of charts and controls (`items`, in the order shown), `columns` wide; `charts`
    and `controls` are each kind alone."""

    name: str
    title: str
    items: tuple[Chart | Control, ...]
    columns: int = 2
    description: str = ""
    allow: tuple[str, ...] | None = None  # role and user names that may see it (None: every viewer)
    public: bool = False  # shown without a login, read-only (a wall screen), with its live data only
    charts: tuple[Chart, ...] = field(default=(), init=False)
    controls: tuple[Control, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        check_name("dashboard", self.name)
        if self.public and self.allow is not None:
            raise ConfigError(f"dashboard {self.name!r} is public: anyone may see it, so it takes no allow list")
        if not 1 <= self.columns <= 6:
            raise ConfigError("a dashboard has 1 to 6 columns")
        if not self.items:
            raise ConfigError(f"dashboard {self.name!r} has no charts or controls")
        named: list[Chart | Control] = []
        seen: set[str] = set()  # charts and controls are named apart: "control:" prefixes a control
        for item in self.items:
            if not isinstance(item, (Chart, Control)):
                raise ConfigError(f"dashboard {self.name!r}: {item!r} is neither a chart nor a control")
            if not isinstance(item.title, str):  # texts by language
                item = replace(item, title=text(item.title, f"dashboard {self.name!r}: a title"))
            if isinstance(item, Chart):
                base = item.name or slug(item.title or f"{item.kind}-{item.source}")
            else:
                base = check_name("control", item.name) if item.name else slug(item.title or f"{item.kind}-{item.task}")
            prefix = "control:" if isinstance(item, Control) else ""
            name, n = base, 2
            while prefix + name in seen:
                name, n = f"{base}-{n}", n + 1
            seen.add(prefix + name)
            title = item.title or (_title(item) if isinstance(item, Chart) else item.task)
            named.append(replace(item, name=name, title=title, span=min(item.span, self.columns)))
        object.__setattr__(self, "items", tuple(named))
        object.__setattr__(self, "charts", tuple(i for i in named if isinstance(i, Chart)))
        object.__setattr__(self, "controls", tuple(i for i in named if isinstance(i, Control)))

    @property
    def watched(self) -> list[Chart | Control]:
        """The charts and the controls with a state: what reads a source or a stream."""
        return [i for i in self.items if isinstance(i, Chart) or i.state]

    @property
    def tiled(self) -> list[Chart | Control]:
        """What gets a tile computed on each refresh of its source: the charts of sources and the
        controls whose state is a source's column."""
        return [i for i in self.watched if not i.is_stream]

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(i.source for i in self.tiled))

    @property
    def streams(self) -> list[str]:
        return list(dict.fromkeys(i.source for i in self.watched if i.is_stream))

    def chart(self, name: str) -> Chart:
        for chart in self.charts:
            if chart.name == name:
                return chart
        raise NotFoundError(
            _("dashboard %(dashboard)s has no chart %(name)s", dashboard=repr(self.name), name=repr(name))
        )

    def control(self, name: str) -> Control:
        for control in self.controls:
            if control.name == name:
                return control
        raise NotFoundError(
            _("dashboard %(dashboard)s has no control %(name)s", dashboard=repr(self.name), name=repr(name))
        )


def _title(chart: Chart) -> str:
    if chart.kind == "kpi":
        return f"{chart.value or 'rows'}"
    if chart.y:
        return f"{', '.join(chart.y)} by {chart.x}" if chart.x else ", ".join(chart.y)
    return chart.source


@dataclass
class DashboardRegistry:
    """The app's dashboards by name, in declaration order."""

    _items: dict[str, Dashboard] = field(default_factory=dict)

    def add(self, dashboard: Dashboard) -> None:
        if dashboard.name in self._items:
            raise ConfigError(f"dashboard {dashboard.name!r} is declared twice")
        self._items[dashboard.name] = dashboard

    def get(self, name: str) -> Dashboard:
        try:
            return self._items[name]
        except KeyError:
            raise NotFoundError(_("no dashboard named %(name)s", name=repr(name))) from None

    def __iter__(self) -> Iterator[Dashboard]:
        return iter(self._items.values())

    def source_allow(self, source: str) -> tuple[str, ...] | None:
        """Who may read a source's data: every viewer when no dashboard shows it or one open to every
        viewer does, else whoever may see one of the allow-listed dashboards that show it."""
        return self._allow_of([board.allow for board in self._items.values() if source in board.sources])

    def stream_allow(self, stream: str) -> tuple[str, ...] | None:
        """Who may read a stream: as for sources, by the dashboards that show it."""
        return self._allow_of([board.allow for board in self._items.values() if stream in board.streams])

    @staticmethod
    def _allow_of(lists: list[tuple[str, ...] | None]) -> tuple[str, ...] | None:
        if not lists or any(allow is None for allow in lists):
            return None
        return tuple(dict.fromkeys(name for allow in lists if allow is not None for name in allow))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)
