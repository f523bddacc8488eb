"""From a run's outcome to its webhook's arrival: p50/p99/max, and what the outbox adds to
the outcome's own statement.

    .venv/bin/python bench/notify.py [--database-url URL] [--count 200] [--rate 20]

Runs are created with a failure route to a local HTTP server, then failed one by one
(``--rate`` per second, through ``finish_many``, the manager's group commit, which writes
the outbox rows in the outcome's statement); the scheduler's delivery loop
(``scheduler.delivery.Dispatcher``) delivers them. Latency is the webhook's arrival time
minus the outcome's ``ended_at``. Target (issue 17): p99 under 1 s.

Then the outbox's cost on the outcome: the same ``finish_many`` of runs without routes,
against the same statement without its outbox part (built from the same tables), in
alternating rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executor.status import WorkflowStatus
from executor.store import NewTask, SqlStore
from executor.store.migrate import upgrade
from executor.store.records import NotifyRoute, RunAlerts
from scheduler.delivery import Dispatcher
from scheduler.registry import Registry
from tests.receivers import WebhookReceiver

TASKS = [NewTask("t", "bench.t", [], {})]


def latency(store: SqlStore, count: int, rate: float) -> list[float]:
    receiver = WebhookReceiver()
    dispatcher = Dispatcher(store, Registry()).start()
    alerts = RunAlerts((NotifyRoute("failure", receiver.url("/ok")),))
    prefix = f"nb-{uuid.uuid4().hex[:8]}"
    try:
        ended: dict[str, float] = {}
        for i in range(count):
            workflow_id = f"{prefix}-{i}"
            store.create_workflow(
                workflow_id, "bench", b"g", None, "t", TASKS, {}, owner="me", alerts=alerts
            )
            store.finish_many("me", [(workflow_id, WorkflowStatus.FAILED, None, "boom")])
            ended[workflow_id] = store.get_workflow(workflow_id).ended_at or 0.0
            time.sleep(1 / rate)
        deadline = time.monotonic() + 60
        while len(receiver.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return [item.at - ended[item.body["workflow_id"]] for item in receiver.received]
    finally:
        dispatcher.stop()
        receiver.close()


def outcome_cost(store: SqlStore, rounds: int, per_round: int) -> tuple[list[float], list[float]]:
    """ms per ``finish_many`` of one run without routes: with the outbox part, without."""
    with_outbox, without = [], []
    statements = store.sql
    plain = None
    if statements.direct is not None:
        from executor.store.statements import DirectStatement

        w = statements.tables.workflows
        import sqlalchemy as sa

        from executor.store.statements import _field, _json_rows

        rows = _json_rows("outcomes", "o")
        plain = DirectStatement.compile(
            w.update()
            .where(w.c.workflow_id == _field(rows, 0), w.c.owner == sa.bindparam("by"))
            .values(
                {
                    w.c.status: _field(rows, 1),
                    w.c.output_preview: _field(rows, 2),
                    w.c.error: _field(rows, 3),
                    w.c.ended_at: sa.cast(_field(rows, 4), sa.Float),
                    w.c.owner: None,
                    w.c.lease_expires_at: None,
                }
            )
        )
    for _ in range(rounds):
        for form, sink in ((statements.direct, with_outbox), (plain, without)):
            prefix = f"oc-{uuid.uuid4().hex[:8]}"
            ids = [f"{prefix}-{i}" for i in range(per_round)]
            for workflow_id in ids:
                store.create_workflow(workflow_id, "bench", b"g", None, "t", TASKS, {}, owner="me")
            start = time.perf_counter()
            for workflow_id in ids:
                if form is None or form is statements.direct:
                    store.finish_many("me", [(workflow_id, WorkflowStatus.FAILED, None, "x")])
                else:
                    import json

                    row = [workflow_id, "FAILED", None, "x", time.time()]
                    store._send(form, {"by": "me", "outcomes": json.dumps([row])})
            sink.append(1000 * (time.perf_counter() - start) / per_round)
    return with_outbox, without


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='gnomon-notify-')}/b.db"
    store = SqlStore.create(url)
    upgrade(store)
    found = sorted(latency(store, args.count, args.rate))
    print(f"database: {url.split('@')[-1]}   outcomes: {args.count} at {args.rate:g}/s")
    print(
        f"outcome -> webhook arrival: p50 {1000 * statistics.median(found):.0f} ms   "
        f"p99 {1000 * found[max(int(len(found) * 0.99) - 1, 0)]:.0f} ms   "
        f"max {1000 * found[-1]:.0f} ms   ({len(found)}/{args.count} arrived)"
    )
    if store.sql.direct is not None:
        with_outbox, without = outcome_cost(store, args.rounds, 200)
        print(
            f"finish_many of a run without routes: {statistics.median(with_outbox):.3f} ms "
            f"with the outbox part, {statistics.median(without):.3f} ms without "
            f"(median of {args.rounds} interleaved rounds of 200)"
        )
    store.dispose()


if __name__ == "__main__":
    main()
