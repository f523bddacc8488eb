"""A fan-out report: one task per region in parallel, then one report from all of them.

Every 15 minutes; ``--param regions='["eu","us"]'`` narrows a manual run.
"""

from __future__ import annotations

import random
import statistics

import ray

import scheduler


@ray.remote
def region_stats(region: str, as_of: str, samples: int) -> dict:
    rng = random.Random(f"{region}/{as_of}")
    latencies = sorted(rng.lognormvariate(3.0, 0.5) for _ in range(samples))
    return {
        "region": region,
        "requests": samples,
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1),
    }


@ray.remote
def report(as_of: str, *regions: dict) -> dict:
    worst = max(regions, key=lambda stats: stats["p99_ms"])
    return {
        "as_of": as_of,
        "regions": {stats["region"]: stats for stats in regions},
        "requests": sum(stats["requests"] for stats in regions),
        "worst_p99": {"region": worst["region"], "ms": worst["p99_ms"]},
    }


@scheduler.register(
    interval=15 * 60,
    params={"regions": ["eu-west", "eu-north", "us-east", "us-west", "apac"], "samples": 2000},
)
def fanout_report(run: scheduler.Run):
    as_of = run.logical_date.isoformat()
    parts = [
        region_stats.bind(region, as_of, run.params["samples"]) for region in run.params["regions"]
    ]
    return report.bind(as_of, *parts)
