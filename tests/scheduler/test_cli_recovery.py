"""``gnomon retry``, ``gnomon clear`` and ``gnomon fork`` on a registered run whose third
task had a bug, and their one-line refusals."""

from __future__ import annotations

from executor.status import WorkflowStatus
from tests.scheduler.registered import FIX, counts, failed_run, write_dags
from tests.scheduler.test_cli import gnomon, last_line, one_error_line  # noqa: F401 (fixture)


def test_retry_clear_and_fork_from_the_command_line(
    gnomon,  # noqa: F811 (a fixture)
    services,
    workflow,
    store,
    dags,
    marks,
    name,
):
    _registry, _folder, workflow_id = failed_run(services, workflow, dags, marks, name)
    refused = gnomon("retry", workflow_id)
    one_error_line(refused, 2, "give --dags DIR")

    write_dags(dags, marks, name, FIX)
    result = gnomon("retry", workflow_id, "--dags", str(dags))
    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "21"
    assert counts(marks) == [1, 1, 2, 1]

    second = next(t.task_id for t in store.load_tasks(workflow_id) if t.task_id.endswith("_1"))
    result = gnomon("clear", workflow_id, second, "--no-downstream")
    assert result.exit_code == 0, result.output
    assert counts(marks) == [1, 2, 2, 1]

    result = gnomon("fork", workflow_id, "--param", "start=5", "--id", f"{workflow_id}-b")
    one_error_line(result, 2, "give --dags DIR")
    result = gnomon(
        "fork", workflow_id, "--param", "start=5", "--id", f"{workflow_id}-b", "--dags", str(dags)
    )
    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "71"
    assert store.get_workflow(f"{workflow_id}-b").forked_from == workflow_id
    assert store.get_workflow(workflow_id).status == WorkflowStatus.SUCCESSFUL


def test_refusals_are_one_line_and_change_nothing(
    gnomon,  # noqa: F811 (a fixture)
    services,
    workflow,
    store,
    dags,
    marks,
    name,
):
    _registry, _folder, workflow_id = failed_run(services, workflow, dags, marks, name)
    before = store.load_tasks(workflow_id)

    one_error_line(gnomon("clear", workflow_id, "nope"), 2, "nope")
    one_error_line(gnomon("retry", "no-such-run", "--dags", str(dags)), 2, "no-such-run")
    (dags / "four.py").write_text("X = 1\n")
    one_error_line(
        gnomon("retry", workflow_id, "--dags", str(dags)), 1, f"{name!r} is not loaded any more"
    )
    one_error_line(gnomon("fork", workflow_id, "--from", "nope", "--code", "recorded"), 2, "nope")

    assert store.load_tasks(workflow_id) == before
    assert store.get_workflow(workflow_id).status == WorkflowStatus.FAILED
