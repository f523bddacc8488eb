"""Crashes: a workflow's driver and its Ray die mid-run, and another process resumes it
from durable storage alone, never re-running a checkpointed task.

A crash runs a script in a subprocess with its own local Ray, so killing the script kills
that cluster and the manager that owned the workflow; the pytest process, which never
imports the script, resumes it. The scripts that test the workflow outliving its
submitter join the session's cluster instead (``RAY_ADDRESS``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import ray

from tests.executor import scripts
from tests.waiting import count, eventually, marked_by

pytestmark = pytest.mark.slow

#: Shared by every script: its own Ray, the test's database, marks left by each task.
PRELUDE = textwrap.dedent(
    """
    import os
    import sys
    import time

    import ray

    from executor import workflow
    from tests import waiting

    DATABASE_URL, BLOBS, MARKS, WORKFLOW_ID = sys.argv[1:5]


    def mark(name):
        return waiting.mark(MARKS, name)
    """
)

CHAIN = PRELUDE + textwrap.dedent(
    """
    @ray.remote
    def step(name, done):
        mark(name)
        time.sleep(1)
        return done + [name]


    ray.init(address="local", num_cpus=2, include_dashboard=False)
    workflow.init(DATABASE_URL, storage=BLOBS)
    names = ["s1", "s2", "s3", "s4", "s5"]
    dag = []
    for name in names:
        dag = step.options(**workflow.options(task_id=name)).bind(name, dag)
    workflow.run(dag, workflow_id=WORKFLOW_ID)
    mark("driver-finished")
    """
)

COUNTDOWN = PRELUDE + textwrap.dedent(
    """
    @ray.remote
    def countdown(n):
        runs = mark(f"countdown-{n}")
        # The first run of countdown(3) is slow: the crash comes while it runs.
        time.sleep(15 if (n, runs) == (3, 1) else 0.5)
        if n == 0:
            return []
        return workflow.continuation(prepend.bind(n, countdown.bind(n - 1)))


    @ray.remote
    def prepend(n, rest):
        mark(f"prepend-{n}")
        return [n] + rest


    ray.init(address="local", num_cpus=2, include_dashboard=False)
    workflow.init(DATABASE_URL, storage=BLOBS)
    workflow.run(countdown.bind(5), workflow_id=WORKFLOW_ID)
    mark("driver-finished")
    """
)

DETACHED = PRELUDE + textwrap.dedent(
    """
    @ray.remote
    def fetch():
        return 20


    @ray.remote
    def scale(x):
        # Held until the test says go, so the script is surely gone before this returns.
        waiting.eventually(lambda: os.path.exists(os.path.join(MARKS, "go")), timeout=60)
        return 2 * x


    @ray.remote
    def shift(x):
        return x + 2


    if os.environ.get("GNOMON_TEST_CRASH") == "after-insert":
        # A crash point: the process dies the moment the workflow's row is committed,
        # before run_async has handed the workflow to a manager.
        from executor.store import SqlStore

        insert = SqlStore.create_workflow

        def insert_then_die(self, *args, **kwargs):
            insert(self, *args, **kwargs)
            os._exit(3)

        SqlStore.create_workflow = insert_then_die

    workflow.init(DATABASE_URL, storage=BLOBS)  # joins the cluster in RAY_ADDRESS
    workflow.run_async(shift.bind(scale.bind(fetch.bind())), workflow_id=WORKFLOW_ID)
    mark("submitted")
    """
)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _is_ray_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().startswith(b"ray::")
    except FileNotFoundError:
        return False


class Crash:
    """Run a script, kill it at a chosen moment, and wait until nothing of it is alive."""

    def __init__(
        self, tmp_path: Path, store, database_url: str, blob_root: Path, workflow_id: str
    ) -> None:
        self.tmp_path = tmp_path
        self.store = store
        self.workflow_id = workflow_id
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.args = [database_url, str(blob_root), str(self.marks), workflow_id]
        self.process: subprocess.Popen | None = None

    def start(self, script: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.process = scripts.start(script, self.tmp_path, self.args, env)
        return self.process

    def kill_when(self, mark: str, *, whole_node: bool, timeout: float = 120) -> dict[str, str]:
        """SIGKILL the script once ``mark`` appears; return the tasks' recorded statuses once
        every process that could still write (manager, task workers) is gone.

        With ``whole_node`` the manager and the task workers are killed at the same instant
        (a machine crash); otherwise they die with the script's cluster.
        """
        process = self.process
        assert process is not None
        eventually(
            lambda: (self.marks / mark).exists() or process.poll() is not None,
            timeout,
            f"mark {mark!r}",
        )
        assert process.poll() is None, f"the script ended early:\n{scripts.output(self.tmp_path)}"
        owner = self.store.get_workflow(self.workflow_id).owner
        _kill(process)
        doomed = marked_by(self.marks)
        if whole_node:
            doomed.add(int(owner.split("/")[1]))
            for pid in doomed:
                if _is_ray_worker(pid):
                    os.kill(pid, signal.SIGKILL)
        try:
            # Promptly: the lease is still valid; the owner's pid is what tells it is dead.
            eventually(
                lambda: self.store.get_workflow(self.workflow_id).status.value == "RESUMABLE",
                20,
                "the workflow to read RESUMABLE",
            )
            record = self.store.get_workflow(self.workflow_id)
            assert record.owner == owner
            assert record.lease_expires_at > time.time()
            eventually(lambda: not any(map(_alive, doomed)), 30, "the task workers to die")
        finally:
            scripts.kill_group(process)
        return {t.task_id: t.status.value for t in self.store.load_tasks(self.workflow_id)}

    def runs(self, name: str) -> int:
        return count(self.marks, name)


@pytest.fixture
def crash(tmp_path, store, database_url, blob_root, workflow_id):
    crash = Crash(tmp_path, store, database_url, blob_root, workflow_id)
    yield crash
    if crash.process is not None and crash.process.poll() is None:
        _kill(crash.process)
    if crash.process is not None:
        scripts.kill_group(crash.process)


def test_killed_workflow_resumes_without_rerunning_checkpointed_tasks(workflow, crash):
    """Given a 5-task chain whose node dies while the 2nd task runs."""
    crash.start(CHAIN)
    at_kill = crash.kill_when("s2", whole_node=True)

    assert workflow.get_status(crash.workflow_id) == workflow.WorkflowStatus.RESUMABLE
    assert at_kill["s1"] == "SUCCESSFUL"
    assert crash.runs("driver-finished") == 0

    # When another process, which never imported the script, resumes it
    output = workflow.resume(crash.workflow_id)

    # Then the output is right, and only tasks that were not checkpointed ran again.
    assert output == ["s1", "s2", "s3", "s4", "s5"]
    assert workflow.get_status(crash.workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
    for name in ["s1", "s2", "s3", "s4", "s5"]:
        expected = {1} if at_kill[name] == "SUCCESSFUL" else {1, 2}
        assert crash.runs(name) in expected, (name, at_kill, crash.runs(name))
    assert crash.runs("s2") == 2, "the 2nd task was killed mid-run, so it ran again"
    assert [crash.runs(n) for n in ["s3", "s4", "s5"]] == [1, 1, 1]
    assert workflow.get_output(crash.workflow_id, task_id="s1") == ["s1"]


def test_killed_continuations_resume_through_resume_all(workflow, crash):
    """Given a recursive countdown (continuations) whose script alone is SIGKILLed while
    countdown(3) runs; its cluster, manager and workers die with it."""
    crash.start(COUNTDOWN)
    at_kill = crash.kill_when("countdown-3", whole_node=False)

    # Ray Workflows' ids: the recursion numbers the base on, level by level.
    depth = {n: "__main__.countdown" + (f"_{5 - n}" if n < 5 else "") for n in range(6)}
    # countdown(5) and (4) had returned their continuations; (3) was running.
    assert at_kill[depth[5]] == at_kill[depth[4]] == "CONTINUED"
    assert at_kill[depth[3]] in ("PENDING", "RUNNING")

    # When resume_all runs in another process
    resumed = dict(workflow.resume_all())

    # Then it picked the workflow up, and the result is right.
    assert crash.workflow_id in resumed
    assert ray.get(resumed[crash.workflow_id], timeout=120) == [5, 4, 3, 2, 1]
    assert workflow.get_status(crash.workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
    assert workflow.get_output(crash.workflow_id) == [5, 4, 3, 2, 1]

    # Checkpointed steps ran once; the one the crash interrupted ran again; none ran more.
    assert [crash.runs(f"countdown-{n}") for n in range(6)] == [1, 1, 1, 2, 1, 1]
    assert [crash.runs(f"prepend-{n}") for n in range(1, 6)] == [1] * 5
    tasks = crash.store.load_tasks(crash.workflow_id)
    assert {t.status.value for t in tasks} == {"SUCCESSFUL"}


@ray.remote
def ping() -> str:
    return "pong"


@pytest.mark.parametrize("manager", ["running", "not-yet-started"])
def test_workflow_outlives_the_script_that_started_it(workflow, crash, ray_address, manager):
    """A script joins the cluster, starts a workflow and exits at once; either the
    cluster's manager for this database is up, or the script's run_async starts it."""
    if manager == "running":
        assert workflow.run(ping.bind()) == "pong"
    else:
        crash.args[1] = str(crash.tmp_path / "fresh-blobs")  # a storage no manager serves
    process = crash.start(DETACHED, env={"RAY_ADDRESS": ray_address})
    assert process.wait(timeout=120) == 0, scripts.output(crash.tmp_path)
    assert crash.runs("submitted") == 1
    # The script is gone and the workflow is still going.
    assert workflow.get_status(crash.workflow_id) in (
        workflow.WorkflowStatus.PENDING,
        workflow.WorkflowStatus.RUNNING,
    )

    (crash.marks / "go").touch()
    status = workflow.wait_for_completion(crash.workflow_id, timeout=60)

    assert status == workflow.WorkflowStatus.SUCCESSFUL, scripts.output(crash.tmp_path)
    assert workflow.get_output(crash.workflow_id) == 42


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submitter_dying_before_the_handoff_leaves_a_resumable_workflow(
    workflow, crash, ray_address
):
    """Given a submitter that dies the moment the workflow's row is committed, before
    the manager hears of it (a 2 s lease, so the test need not wait the default 30 s)."""
    env = {"RAY_ADDRESS": ray_address, "GNOMON_TEST_CRASH": "after-insert", "GNOMON_LEASE_TTL": "2"}
    process = crash.start(DETACHED, env=env)
    assert process.wait(timeout=120) == 3, scripts.output(crash.tmp_path)
    assert crash.runs("submitted") == 0  # run_async never returned
    (crash.marks / "go").touch()

    # When the lease it was created under lapses, it reads RESUMABLE (not RUNNING for ever)
    eventually(
        lambda: workflow.get_status(crash.workflow_id) == workflow.WorkflowStatus.RESUMABLE,
        15,
        "the orphaned workflow to read RESUMABLE",
    )
    assert crash.workflow_id in dict(workflow.list_all(workflow.WorkflowStatus.RESUMABLE))

    # Then a resume runs it from the stored graph.
    assert workflow.resume(crash.workflow_id) == 42
    assert workflow.get_status(crash.workflow_id) == workflow.WorkflowStatus.SUCCESSFUL
