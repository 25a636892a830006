"""Human durations ("10m", "1h30m") and sizes ("100MB") as settings and task options accept them."""

from __future__ import annotations

import math

import pytest

from mieruka import ConfigError
from mieruka.durations import parse_duration
from mieruka.settings import parse_size

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4


# -- durations ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, seconds",
    [
        (0, 0.0),
        (90, 90.0),
        (1.5, 1.5),
        ("0", 0.0),
        ("90", 90.0),
        ("2.5", 2.5),
        ("  45  ", 45.0),
        ("0s", 0.0),
        ("30s", 30.0),
        ("2.5s", 2.5),
        ("250ms", 0.25),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1h30m15s", 5415.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1w2d3h4m5s6ms", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5 + 0.006),
        ("10M", 600.0),  # case-insensitive
        ("1H30M", 5400.0),
        ("10 s", 10.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    got = parse_duration(value)
    assert isinstance(got, float)
    assert got == pytest.approx(seconds, abs=1e-9)


def test_parse_duration_none_stays_none() -> None:
    assert parse_duration(None) is None


def test_minutes_are_not_milliseconds() -> None:
    # "ms" must win over "m" followed by "s"
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("5m") == 300.0
    assert parse_duration("5m5s") == 305.0


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "abc",
        "10x",
        "m",
        "s",
        "1h30",
        "h1",
        "10 minutes",
        "10min",
        "1.5.3s",
        "1,5s",
        "-5",
        "-1m",
        "1m-30s",
        "++1",
        "1s junk",
    ],
)
def test_parse_duration_rejects(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(value)
    assert repr(value) in err.value.message or "negative" in err.value.message
    assert err.value.message  # one readable line
    assert "\n" not in err.value.message


@pytest.mark.parametrize("value", [-1, -0.5, "-inf"])
def test_parse_duration_rejects_negative_numbers(value: float) -> None:
    with pytest.raises(ConfigError, match="negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["nan", "inf", math.inf])
def test_parse_duration_rejects_non_finite(value: str | float) -> None:
    """ "nan" and "inf" read as floats, but no timeout or interval can be NaN or infinite (a NaN
    poll interval makes every comparison false)."""
    with pytest.raises(ConfigError):
        parse_duration(value)


# -- sizes --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, size",
    [
        (0, 0),
        (1234, 1234),
        ("0", 0),
        ("1234", 1234),
        ("100B", 100),
        ("100 b", 100),
        ("512k", 512 * KIB),
        ("512K", 512 * KIB),
        ("512KB", 512 * KIB),
        ("512KiB", 512 * KIB),
        ("100MB", 100 * MIB),
        ("100mb", 100 * MIB),
        ("100 MB", 100 * MIB),
        ("100M", 100 * MIB),
        ("2 GiB", 2 * GIB),
        ("1.5GB", int(1.5 * GIB)),
        ("1TB", TIB),
        (" 7 ", 7),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    got = parse_size(value)
    assert type(got) is int
    assert got == size


@pytest.mark.parametrize("value", ["", "lots", "MB", "B", "10XB", "1.5", "1e3", "ten MB", "1MBB", "nanK"])
def test_parse_size_rejects(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_size(value)
    assert repr(value) in err.value.message


@pytest.mark.parametrize("value", ["-5MB", "infK"])
def test_parse_size_rejects_negative_and_infinite(value: str) -> None:
    """A size is a byte count: never negative, always finite; the error is a ConfigError like any
    other bad value (not an OverflowError escaping from int(float('inf')))."""
    with pytest.raises(ConfigError):
        parse_size(value)
