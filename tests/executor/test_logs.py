"""Task logs: stdout, stderr and logging records per attempt, bounded, live while running."""

from __future__ import annotations

import time

import ray

from executor.logs import LIMIT, AttemptLog


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
def flaky(path: str) -> str:
    import os

    attempt = len(os.listdir(path)) + 1
    open(os.path.join(path, f"attempt-{attempt}"), "w").close()
    print(f"attempt {attempt} starting")
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} failed")
    return "ok"


def test_every_attempt_has_its_own_log_with_the_error(workflow, workflow_id, store, marks):
    assert workflow.run(flaky.bind(str(marks)), workflow_id=workflow_id) == "ok"

    logs = store.task_logs(workflow_id, f"{__name__}.flaky")
    assert [log.attempt for log in logs] == [1, 2, 3]
    assert "attempt 1 starting" in logs[0].text and "RuntimeError: attempt 1 failed" in logs[0].text
    assert "attempt 3 starting" in logs[2].text and "failed" not in logs[2].text


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
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline and not ray.wait([ref], timeout=0)[0]:
        logs = store.task_logs(workflow_id, task_id)
        if logs:
            seen = logs[-1].text
            break
        time.sleep(0.2)
    assert "first line" in seen and "last line" not in seen
    assert ray.get(ref) == "done"
    assert "last line" in store.task_logs(workflow_id, task_id)[-1].text


def test_log_keeps_only_the_last_mebibyte():
    log = AttemptLog(0.0)
    for i in range(3000):
        log.write(f"{i:06d} " + "x" * 1000 + "\n")
    text = log.text()
    assert text.startswith("[earlier output dropped")
    assert len(text) < LIMIT + 100
    assert text.rstrip().endswith("x") and "002999 " in text and "000000 " not in text
