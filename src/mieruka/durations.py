"""Parse human durations such as "10m", "1h30m", "2.5s" or plain seconds."""

from __future__ import annotations

import math
import re

from .errors import ConfigError
from .i18n import _

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")


def parse_duration(value: str | float | int | None) -> float | None:
    """Seconds in `value`; None stays None. "1h30m" -> 5400.0, 90 -> 90.0."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(_("a duration must not be negative: %(value)s", value=value))
        if not math.isfinite(value):
            raise ConfigError(_("a duration must be finite, not %(value)s", value=value))
        return float(value)
    text = value.strip().lower().replace(" ", "")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return parse_duration(number)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ConfigError(_("cannot read duration %(value)s: use forms like '30s', '10m', '1h30m'", value=repr(value)))
    return total
