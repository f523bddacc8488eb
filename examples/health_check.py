"""Every-minute health check: probe services in parallel and summarise.

A failed probe is a finding, not a failed run; the run fails only if the probes
themselves cannot run. Targets are ``host:port`` pairs (params ``targets``).
"""

from __future__ import annotations

import shutil
import socket
import time

import ray

import scheduler


@ray.remote(num_cpus=0.1)
def probe_tcp(target: str, timeout: float) -> dict:
    host, _, port = target.rpartition(":")
    started = time.perf_counter()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            ok, error = True, None
    except (OSError, ValueError) as caught:
        ok, error = False, str(caught)
    return {
        "target": target,
        "ok": ok,
        "ms": round((time.perf_counter() - started) * 1e3, 1),
        "error": error,
    }


@ray.remote(num_cpus=0.1)
def probe_disk(path: str, min_free_fraction: float) -> dict:
    usage = shutil.disk_usage(path)
    free = usage.free / usage.total
    return {
        "target": f"disk {path}",
        "ok": free >= min_free_fraction,
        "free": round(free, 3),
        "error": None,
    }


@ray.remote(num_cpus=0.1)
def summarize(checked_at: str, *results: dict) -> dict:
    failing = [result["target"] for result in results if not result["ok"]]
    return {
        "checked_at": checked_at,
        "healthy": not failing,
        "failing": failing,
        "results": list(results),
    }


@scheduler.register(
    cron="* * * * *",
    params={"targets": ["127.0.0.1:5432"], "disk": "/", "min_free": 0.05, "timeout": 2.0},
    metadata={"team": "platform"},
)
def health_check(run: scheduler.Run):
    params = run.params
    probes = [probe_tcp.bind(target, params["timeout"]) for target in params["targets"]]
    probes.append(probe_disk.bind(params["disk"], params["min_free"]))
    return summarize.bind(run.logical_date.isoformat(), *probes)
