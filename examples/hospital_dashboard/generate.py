"""Make a synthetic hospital warehouse: wards, a year of admissions with their discharges, so
that the dashboard has realistic volumes (about 20,000 admissions, ~55 a day, busier by day).

    python examples/hospital_dashboard/generate.py                       # SQLite next to this file
    python examples/hospital_dashboard/generate.py --url postgresql+psycopg://postgres@127.0.0.1/hospital

Times are stored in UTC without a zone, as warehouses usually do. Re-running replaces the data.
"""

from __future__ import annotations

import argparse
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

HERE = Path(__file__).parent
DEFAULT_URL = f"sqlite:///{HERE / 'warehouse.db'}"
WARDS = [
    ("Internal medicine", 40),
    ("Surgery", 36),
    ("Orthopaedics", 30),
    ("Cardiology", 28),
    ("Paediatrics", 24),
    ("Obstetrics", 20),
    ("Neurology", 22),
    ("ICU", 12),
    ("Oncology", 26),
    ("Respiratory", 24),
]
DIAGNOSES = [
    "Pneumonia",
    "Heart failure",
    "Fracture",
    "Stroke",
    "Sepsis",
    "COPD",
    "Delivery",
    "Appendicitis",
    "Chemotherapy",
    "Observation",
]

metadata = sa.MetaData()
wards = sa.Table(
    "wards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(60), nullable=False),
    sa.Column("beds", sa.Integer, nullable=False),
)
admissions = sa.Table(
    "admissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("patient_id", sa.Integer, nullable=False),
    sa.Column("ward_id", sa.Integer, sa.ForeignKey("wards.id"), nullable=False),
    sa.Column("admitted_at", sa.DateTime, nullable=False, index=True),
    sa.Column("discharged_at", sa.DateTime, index=True),
    sa.Column("age", sa.Integer, nullable=False),
    sa.Column("sex", sa.String(1), nullable=False),
    sa.Column("diagnosis", sa.String(40), nullable=False),
)


def hourly_weight(hour: int) -> float:
    """Admissions peak in the late morning and early evening, and are rare at night."""
    return 0.35 + math.exp(-((hour - 11) ** 2) / 18) + 0.6 * math.exp(-((hour - 19) ** 2) / 8)


def generate(
    url: str = DEFAULT_URL, days: int = 365, per_day: float = 55.0, seed: int = 7, now: datetime | None = None
) -> int:
    """Fill the warehouse; returns the number of admissions written."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    weights = [hourly_weight(h) for h in range(24)]
    scale = per_day / sum(weights)
    rows = []
    start = (now - timedelta(days=days)).replace(minute=0, second=0)
    hour = start
    while hour < now:
        expected = weights[hour.hour] * scale
        for _ in range(_poisson(rng, expected)):
            admitted = hour + timedelta(seconds=rng.randrange(3600))
            if admitted > now:
                continue
            ward = rng.randrange(len(WARDS)) + 1
            stay = timedelta(hours=rng.lognormvariate(math.log(60), 0.8))
            discharged = admitted + stay
            rows.append(
                {
                    "id": len(rows) + 1,
                    "patient_id": rng.randrange(1, 60_000),
                    "ward_id": ward,
                    "admitted_at": admitted,
                    "discharged_at": discharged if discharged <= now else None,
                    "age": max(0, min(100, int(rng.gauss(62, 20)))),
                    "sex": rng.choice("FM"),
                    "diagnosis": rng.choice(DIAGNOSES),
                }
            )
        hour += timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(wards.insert(), [{"id": i + 1, "name": n, "beds": b} for i, (n, b) in enumerate(WARDS)])
        for offset in range(0, len(rows), 5000):
            conn.execute(admissions.insert(), rows[offset : offset + 5000])
    engine.dispose()
    return len(rows)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small hourly means used here.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="SQLAlchemy URL of the warehouse to (re)create")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    count = generate(args.url, args.days)
    print(f"{count} admissions written to {sa.make_url(args.url).render_as_string(hide_password=True)}")
