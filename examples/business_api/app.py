"""A slow business function as a Web API, run on an expensive compute node that is started only
when a job needs it and stopped once nobody uses it (scenario 2).

    export MIERUKA_EXECUTOR=celery MIERUKA_BROKER_URL=redis://127.0.0.1:6379/0 \\
           MIERUKA_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/business
    mieruka run examples/business_api/app.py        # http://127.0.0.1:8000/docs

The function (`support.forecast_staffing`) is unchanged; this file only declares it as a task on
the queue `core`, and that queue as a compute pool: local `mieruka worker` processes by default, or
the EC2 instance named by CORE_INSTANCE_ID (its boot starts `mieruka worker ... --queues core`)."""

from __future__ import annotations

import csv
import io
import os
from typing import Annotated

from pydantic import Field
from support import BadOrders, forecast_staffing, read_orders, sample_orders

import mieruka
from mieruka.pools import EC2Instance, LocalWorkers, PoolHooks

app = mieruka.App(
    "Business support",
    description="Staffing plans from order history, as a Web API.",
    timezone=os.environ.get("MIERUKA_TIMEZONE", "Asia/Tokyo"),
)


def core_node() -> PoolHooks:
    instance = os.environ.get("CORE_INSTANCE_ID")
    if instance:
        return EC2Instance(
            instance,
            region=os.environ.get("CORE_REGION") or None,
            endpoint_url=os.environ.get("CORE_EC2_ENDPOINT") or None,
        )
    return LocalWorkers(concurrency=int(os.environ.get("CORE_CONCURRENCY", "1")))


app.pool("core", core_node(), idle_stop=os.environ.get("CORE_IDLE_STOP", "15m"))


@app.task(queue="core", timeout="30m", keep="90d")
def staffing_plan(
    orders: mieruka.File | None = None,
    horizon_days: Annotated[int, Field(ge=1, le=90)] = 14,
    simulations: Annotated[int, Field(ge=100, le=1_000_000)] = 20_000,
    service_level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95,
    *,
    job: mieruka.Job,
) -> list[dict[str, object]]:
    """Plan the staff of each coming day from the order history.

    Args:
        orders: A CSV with the columns date and orders, one row a day; empty for a sample history.
        horizon_days: How many days to plan, from the day after the history ends.
        simulations: Simulated futures: more is steadier, slower and needs more memory.
        service_level: The probability that a day's staff can handle its orders.
    """
    try:
        history = read_orders(orders.path) if orders is not None else sample_orders()
    except BadOrders as exc:
        raise ValueError(f"invalid orders file: {exc}") from None
    print(f"{len(history)} days of history, {history[0].day} to {history[-1].day}")
    plan = forecast_staffing(history, horizon_days, simulations, service_level, progress=job.progress)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(plan[0]))
    writer.writeheader()
    writer.writerows(plan)
    job.artifact("plan.csv", out.getvalue())
    print(f"planned {horizon_days} days: {sum(int(str(d['staff'])) for d in plan)} staff-days")
    return plan
