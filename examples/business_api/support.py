"""The team's business function, as it was before mieruka: how many staff each coming day needs so
that the day's orders are handled with the wanted probability. It knows nothing of the web; it is
slow and memory-hungry because it keeps every simulated path (simulations x days) in memory."""

from __future__ import annotations

import csv
import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

ORDERS_PER_STAFF = 40  # orders one person handles in a day


@dataclass(frozen=True)
class Day:
    day: date
    orders: int


class BadOrders(ValueError):
    """The orders file cannot be read: says which line and why."""


def read_orders(path: Path) -> list[Day]:
    """A CSV with the columns `date` (YYYY-MM-DD) and `orders` (a whole number), one row a day."""
    days: list[Day] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"date", "orders"} <= set(reader.fieldnames):
            raise BadOrders(f"the header must name the columns date and orders, not {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                days.append(Day(date.fromisoformat(row["date"].strip()), int(row["orders"])))
            except (ValueError, AttributeError):
                raise BadOrders(
                    f"line {line}: {row['date']!r}, {row['orders']!r} is not a date and a whole number of orders"
                ) from None
    if len(days) < 14:
        raise BadOrders(f"{len(days)} days of orders: at least 14 are needed to see a weekly pattern")
    return sorted(days, key=lambda d: d.day)


def sample_orders(days: int = 120, seed: int = 7) -> list[Day]:
    """Synthetic history: a weekly pattern, a slow trend and noise."""
    rng = random.Random(seed)
    start = date(2026, 8, 1)
    weekly = [1.15, 1.05, 1.0, 1.0, 1.1, 0.7, 0.55]
    return [
        Day(
            start + timedelta(days=i),
            max(0, round((400 + 0.8 * i) * weekly[(start + timedelta(days=i)).weekday()] + rng.gauss(0, 25))),
        )
        for i in range(days)
    ]


def forecast_staffing(
    history: Iterable[Day],
    horizon_days: int = 14,
    simulations: int = 20_000,
    service_level: float = 0.95,
    seed: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> list[dict[str, object]]:
    """Simulate the next `horizon_days` days `simulations` times from the weekday levels and noise of
    the history; each day's staff is the `service_level` quantile of its simulated orders."""
    days = list(history)
    rng = random.Random(seed)
    by_weekday: dict[int, list[int]] = {}
    for d in days:
        by_weekday.setdefault(d.day.weekday(), []).append(d.orders)
    level = {w: statistics.fmean(v[-8:]) for w, v in by_weekday.items()}
    noise = {w: statistics.pstdev(v[-8:]) or 1.0 for w, v in by_weekday.items()}
    first = days[-1].day + timedelta(days=1)
    coming = [first + timedelta(days=i) for i in range(horizon_days)]
    paths: list[list[float]] = []  # every path kept: the analysts look at them afterwards
    chunk = max(1, simulations // 20)
    for n in range(simulations):
        drift = rng.gauss(1.0, 0.03)
        paths.append(
            [max(0.0, rng.gauss(level.get(d.weekday(), 0.0), noise.get(d.weekday(), 1.0)) * drift) for d in coming]
        )
        if progress is not None and (n + 1) % chunk == 0:
            progress((n + 1) / simulations, f"simulated {n + 1:,} of {simulations:,} paths")
    plan = []
    for i, d in enumerate(coming):
        simulated = sorted(path[i] for path in paths)
        quantile = simulated[min(len(simulated) - 1, int(service_level * len(simulated)))]
        plan.append(
            {
                "date": d.isoformat(),
                "weekday": d.strftime("%a"),
                "expected_orders": round(statistics.fmean(simulated)),
                "orders_at_service_level": round(quantile),
                "staff": math.ceil(quantile / ORDERS_PER_STAFF),
            }
        )
    return plan
