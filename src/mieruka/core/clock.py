"""The one source of "now": timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from ..errors import ValidationError


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(
    value: datetime | None, field: str, naive_zone: tzinfo = UTC, plus: timedelta = timedelta(0)
) -> datetime | None:
    """A time someone gave (naive: in `naive_zone`), `plus` a span, in UTC; a ValidationError
    naming the field when that falls outside the years 1 to 9999."""
    if value is None:
        return None
    try:
        return ((value.replace(tzinfo=naive_zone) if value.tzinfo is None else value) + plus).astimezone(UTC)
    except OverflowError:
        raise ValidationError(
            f"{field}: {value.isoformat()} is out of range once in UTC", [{"field": field, "message": "out of range"}]
        ) from None
