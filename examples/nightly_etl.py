"""Nightly ETL on cron: extract one day of orders, clean them, load a daily summary.

Runs at 03:00 UTC for the day before. ``gnomon trigger nightly_etl --param day=2026-01-31``
re-runs one day by hand; a re-run of a finished task does not happen, so a retried
load never double-counts.
"""

from __future__ import annotations

import json
import os
import random
from datetime import date, timedelta
from pathlib import Path

import ray

import scheduler


def default_output_dir() -> str:
    """Where the daily summaries land (one JSON file per day) unless params say otherwise."""
    home = Path(os.environ.get("GNOMON_HOME", Path.home() / ".gnomon"))
    return str(home / "examples" / "etl")


@ray.remote
def extract(day: str, orders: int) -> list[dict]:
    """Stand-in for a query against the order database: deterministic per day."""
    rng = random.Random(day)
    return [
        {
            "order_id": f"{day}-{i}",
            "region": rng.choice(["eu", "us", "apac"]),
            "amount": round(rng.uniform(-5, 250), 2),
        }
        for i in range(orders)
    ]


@ray.remote
def transform(rows: list[dict]) -> list[dict]:
    """Drop refunds and malformed amounts."""
    return [row for row in rows if row["amount"] > 0]


@ray.remote
def load(day: str, rows: list[dict], output_dir: str) -> dict:
    by_region: dict[str, float] = {}
    for row in rows:
        by_region[row["region"]] = round(by_region.get(row["region"], 0.0) + row["amount"], 2)
    summary = {"day": day, "orders": len(rows), "revenue": by_region}
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{day}.json").write_text(json.dumps(summary, indent=2))
    return summary


@scheduler.register(cron="0 3 * * *", timezone="UTC", params={"orders": 500, "output_dir": None})
def nightly_etl(run: scheduler.Run):
    day = run.params.get("day") or (run.logical_date.date() - timedelta(days=1)).isoformat()
    date.fromisoformat(day)  # a bad --param day= fails the trigger, not a task
    output_dir = run.params["output_dir"] or default_output_dir()
    return load.bind(day, transform.bind(extract.bind(day, run.params["orders"])), output_dir)
