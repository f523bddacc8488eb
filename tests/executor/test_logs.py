"""Task logs: stdout, stderr and logging records per attempt, bounded, live while running."""

from __future__ import annotations

import ray

from executor.logs import LIMIT, AttemptLog
from tests.waiting import eventually, mark


@ray.remote
def chatty(n: int) -> int:
    import logging
    import sys

    print(f"stdout says {n}")
    print("stderr says hi", file=sys.stderr)
    logging.getLogger("etl").info("loaded %d rows", n)
    return n


def test_each_task_keeps_its_output(workflow, workflow_id, store):
    assert workflow.run(chatty.bind(7), workflow_id=workflow_id) == 7

    [log] = store.task_logs(workflow_id, f"{__name__}.chatty")
    assert log.attempt == 1
    assert "stdout says 7" in log.text
    assert "stderr says hi" in log.text
    assert "INFO etl: loaded 7 rows" in log.text


@ray.remote(max_retries=2, retry_exceptions=True)
def flaky(marks: str) -> str:
    attempt = mark(marks, "flaky")
    print(f"attempt {attempt} starting")
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} failed")
    return "ok"


def test_every_attempt_has_its_own_log_with_the_error(workflow, workflow_id, store, marks):
    assert workflow.run(flaky.bind(str(marks)), workflow_id=workflow_id) == "ok"

    logs = store.task_logs(workflow_id, f"{__name__}.flaky")
    assert [log.attempt for log in logs] == [1, 2, 3]
    assert "attempt 1 starting" in logs[0].text
    assert "RuntimeError: attempt 1 failed" in logs[0].text
    assert "attempt 3 starting" in logs[2].text
    assert "failed" not in logs[2].text


@ray.remote
def slow_talker(seconds: float) -> str:
    import time

    print("first line", flush=True)
    time.sleep(seconds)
    print("last line")
    return "done"


def test_a_running_task_log_can_be_tailed(workflow, workflow_id, store):
    ref = workflow.run_async(slow_talker.bind(4.0), workflow_id=workflow_id)
    task_id = f"{__name__}.slow_talker"
    logs = eventually(lambda: store.task_logs(workflow_id, task_id), what="the running task's log")
    assert "first line" in logs[-1].text
    assert "last line" not in logs[-1].text
    assert ray.get(ref) == "done"
    assert "last line" in store.task_logs(workflow_id, task_id)[-1].text


def test_log_keeps_only_the_last_mebibyte():
    log = AttemptLog(0.0)
    for i in range(3000):
        log.write(f"{i:06d} " + "x" * 1000 + "\n")
    text = log.text()
    assert text.startswith("[earlier output dropped")
    assert len(text) < LIMIT + 100
    assert text.rstrip().endswith("x")
    assert "002999 " in text
    assert "000000 " not in text
