"""Times, numbers, sizes and durations as the reader's language writes them (issue 22), with Babel's
CLDR data: Japanese `2026/12/04 20:28:05`, Russian `04.12.2026 20:28:05` and `1,5 МБ`. English keeps
mieruka's own forms (ISO-like times, `1.5 MB`, `2 min 5 s`). Babel is imported on the first page in
another language, never by an English-only server."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ...i18n import BY_TAG, ENGLISH, current_language
from . import render


def _locale(language: str) -> str:
    return BY_TAG[language].folder if language in BY_TAG else ENGLISH


def local_time(value: datetime | None, zone: ZoneInfo, language: str | None = None) -> str:
    """`value` in the time zone `zone`, as a table shows it (24-hour, with seconds)."""
    language = language or current_language()
    if value is None or language == ENGLISH or language not in BY_TAG:
        return render.local_time(value, zone)
    from babel.dates import format_datetime

    pattern = BY_TAG[language].when or "medium"
    return format_datetime(value.astimezone(zone), pattern, tzinfo=zone, locale=_locale(language))


def number(value: float | None, language: str | None = None) -> str:
    """A number with the language's digit grouping and decimal sign."""
    language = language or current_language()
    if value is None:
        return ""
    if language == ENGLISH or language not in BY_TAG:
        return f"{value:,}" if isinstance(value, int) else f"{value:,.15g}"
    from babel.numbers import format_decimal

    return str(format_decimal(value, locale=_locale(language)))


def size(value: int, language: str | None = None) -> str:
    """A size in bytes, in B, kB, MB or GB as the language abbreviates them."""
    language = language or current_language()
    if language == ENGLISH or language not in BY_TAG:
        return render.human_size(value)
    amount, unit = float(value), "byte"
    for unit in ("byte", "kilobyte", "megabyte", "gigabyte"):
        if amount < 1024 or unit == "gigabyte":
            break
        amount /= 1024
    from babel.units import format_unit

    pattern = "0" if unit == "byte" else "0.0"
    return str(format_unit(amount, f"digital-{unit}", length="short", format=pattern, locale=_locale(language)))


def duration(seconds: float | None, language: str | None = None) -> str:
    """A duration in ms, s, min and h, as the language abbreviates them."""
    language = language or current_language()
    if seconds is None:
        return ""
    if language == ENGLISH or language not in BY_TAG:
        return render.human_duration(seconds)
    from babel.units import format_unit

    locale = _locale(language)

    def part(amount: float, unit: str, pattern: str = "0") -> str:
        return str(format_unit(amount, f"duration-{unit}", length="short", format=pattern, locale=locale))

    if seconds < 1:
        return part(seconds * 1000, "millisecond")
    if seconds < 60:
        return part(seconds, "second", "0.0")
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{part(minutes, 'minute')} {part(secs, 'second')}"
    hours, minutes = divmod(minutes, 60)
    return f"{part(hours, 'hour')} {part(minutes, 'minute')}"
