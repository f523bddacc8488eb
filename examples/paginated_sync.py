"""A recursive job with continuations: sync a paginated API one page per task.

Each task fetches one page and continues with the next page as a new task, so the
workflow grows only as far as the data goes, and a crash resumes at the page it was on.
"""

from __future__ import annotations

import random

import ray

import scheduler


def fetch_page(cursor: int, page_size: int, total: int, seed: str) -> list[dict]:
    """Stand-in for an HTTP call to a paginated API."""
    rng = random.Random(f"{seed}/{cursor}")
    end = min(cursor + page_size, total)
    return [{"id": i, "value": rng.randint(0, 100)} for i in range(cursor, end)]


@ray.remote
def sync_page(cursor: int, synced: int, checksum: int, params: dict, seed: str):
    from executor import workflow

    rows = fetch_page(cursor, params["page_size"], params["total"], seed)
    synced += len(rows)
    checksum = (checksum + sum(row["value"] for row in rows)) % 1_000_003
    if not rows or cursor + len(rows) >= params["total"]:
        return {"synced": synced, "pages": cursor // params["page_size"] + 1, "checksum": checksum}
    return workflow.continuation(sync_page.bind(cursor + len(rows), synced, checksum, params, seed))


@scheduler.register(interval=10 * 60, params={"page_size": 50, "total": 400})
def paginated_sync(run: scheduler.Run):
    return sync_page.bind(0, 0, 0, run.params, run.logical_date.isoformat())
