"""When a scheduled task fires next: a fixed interval (`every="1m"`) or a cron expression.

Missed runs (the server was down at a due time) are coalesced: at start-up a schedule whose due
time has passed fires once, then continues from now. No burst of catch-up runs is ever made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError
from ..i18n import _

if TYPE_CHECKING:
    from croniter import croniter


@dataclass(frozen=True)
class Schedule:
    every: float | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ConfigError("a schedule needs exactly one of every= or cron=")
        if self.every is not None and self.every <= 0:
            raise ConfigError("every= must be a positive duration")
        if self.cron is not None and not _croniter().is_valid(self.cron):
            raise ConfigError(f"invalid cron expression {self.cron!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {self.timezone!r}") from None

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (UTC in, UTC out)."""
        if self.every is not None:
            # Align on multiples of the interval since the epoch, so that restarts keep the rhythm.
            epoch = moment.timestamp()
            slot = (int(epoch // self.every) + 1) * self.every
            return datetime.fromtimestamp(slot, UTC)
        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone))
        croniter = _croniter()
        nxt: datetime = croniter(self.cron, local).get_next(datetime)
        if nxt.replace(tzinfo=None) == local.replace(tzinfo=None):
            # The same wall-clock time again: the hour repeated when clocks went back. Once is enough.
            nxt = croniter(self.cron, nxt).get_next(datetime)
        return nxt.astimezone(UTC)

    def describe(self) -> str:
        if self.every is not None:
            return f"every {_human(self.every)}"
        return f"cron {self.cron} ({self.timezone})"

    def label(self) -> str:
        """describe() in the reader's language, for pages (the API keeps describe()'s words)."""
        if self.every is not None:
            return _("every %(interval)s", interval=_human(self.every))
        return _("cron %(expression)s (%(zone)s)", expression=self.cron, zone=self.timezone)


def _human(seconds: float) -> str:
    delta = timedelta(seconds=seconds)
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{delta.total_seconds():g}s"


def _croniter() -> type[croniter]:
    """croniter (and dateutil under it), imported for apps with a cron schedule only."""
    from croniter import croniter

    found: type[croniter] = croniter
    return found
