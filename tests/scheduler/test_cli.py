"""Every ``gnomon`` command, with its error paths, through click's CliRunner on both databases."""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest
import ray
from click.testing import CliRunner

from executor.status import WorkflowStatus
from scheduler.cli import cli
from tests.waiting import eventually
from web import create_app

OK = WorkflowStatus.SUCCESSFUL

DAGS = """
import os

import ray

import scheduler
from tests.waiting import eventually


@ray.remote
def double(x):
    return 2 * x


@ray.remote
def total(*xs):
    return sum(xs)


@ray.remote
def explode():
    raise RuntimeError("boom on purpose")


@ray.remote
def flaky(path):
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first attempt fails")
    return "second attempt"


@ray.remote
def blocked(path):
    eventually(lambda: os.path.exists(path), timeout=60, what=path)
    return "unblocked"


@scheduler.register(name="{name}", params={{"n": 3}})
def summed(run):
    return total.bind(*[double.bind(i) for i in range(run.params["n"])])


def failing():
    return explode.bind()


NOT_A_DAG = 42
"""


@pytest.fixture(scope="module")
def dags_file(tmp_path_factory):
    name = f"cli_sum_{uuid.uuid4().hex[:8]}"
    path = tmp_path_factory.mktemp("cli") / f"cli_dags_{uuid.uuid4().hex[:8]}.py"
    path.write_text(textwrap.dedent(DAGS.format(name=name)))
    return path, name


@pytest.fixture
def gnomon(workflow, database_url, blob_root):
    """``gnomon(*args)`` runs the CLI on the test database and returns click's Result."""
    runner = CliRunner()

    def invoke(*args, env=None):
        options = ["--database-url", database_url, "--storage", str(blob_root)]
        return runner.invoke(cli, [*args, *options], env=env, catch_exceptions=False)

    return invoke


def last_line(printed: str) -> str:
    """What the command printed last. The CLI runs in this process, where Ray's own
    threads print too: a raylet warning about worker starts once landed in the capture."""
    return printed.strip().splitlines()[-1]


def one_error_line(result, code, text):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.stderr
    assert text in lines[-1], result.stderr
    assert "Traceback" not in result.output


def test_run_a_registered_factory_with_params(gnomon, dags_file, store, workflow_id):
    path, name = dags_file
    result = gnomon("run", f"{path}:summed", "--param", "n=4", "--id", workflow_id)

    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "12"  # 0 + 2 + 4 + 6
    assert "5/5 tasks, 0 failed" in result.stderr
    record = store.get_workflow(workflow_id)
    assert (record.name, record.trigger, record.status) == (name, "manual", OK)
    assert record.user_metadata["params"] == {"n": 4}


def test_run_reports_a_failed_workflow_in_one_line(gnomon, dags_file):
    path, _ = dags_file
    result = gnomon("run", f"{path}:failing")
    one_error_line(result, 1, "is FAILED: RuntimeError: boom on purpose")
    assert "0 failed" not in result.stderr.splitlines()[-2]  # the bar counted the failure


@pytest.mark.parametrize(
    ("target", "code", "text"),
    [
        ("no_such_module_xyz:main", 2, "Cannot import 'no_such_module_xyz'"),
        ("{path}:missing", 2, "has no 'missing'"),
        ("{path}:NOT_A_DAG", 2, "42 is not a DAG"),
        ("{path}", 2, "Expected MODULE:FUNC"),
    ],
)
def test_run_with_a_bad_target_is_a_usage_error(gnomon, dags_file, target, code, text):
    path, _ = dags_file
    one_error_line(gnomon("run", target.format(path=path)), code, text)


def test_run_a_file_with_a_bad_cron_is_a_usage_error(gnomon, tmp_path):
    path = tmp_path / "bad_cron_dags.py"
    path.write_text(
        "import scheduler\n\n@scheduler.register(cron='0 3 * *')\n"
        "def nightly(run):\n    return None\n"
    )
    one_error_line(gnomon("run", f"{path}:nightly"), 2, "Wrong number of fields")


def test_list_status_and_output(gnomon, dags_file, workflow_id):
    path, name = dags_file
    assert gnomon("run", f"{path}:summed", "--id", workflow_id).exit_code == 0

    listed = gnomon("list", "--name", name, "--status", "successful")
    assert listed.exit_code == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "TRIGGER", "CREATED", "DURATION"]
    assert any(row.split()[:3] == [workflow_id, name, "SUCCESSFUL"] for row in rows)
    as_json = json.loads(gnomon("list", "--name", name, "--json").stdout)
    assert workflow_id in [item["id"] for item in as_json]

    status = json.loads(gnomon("status", workflow_id, "--json").stdout)
    assert status["status"] == "SUCCESSFUL"
    assert len(status["tasks"]) == 4
    table = gnomon("status", workflow_id).stdout
    assert "TASK" in table
    assert all(task["task_id"] in table for task in status["tasks"])

    assert last_line(gnomon("output", workflow_id).stdout) == "6"
    doubled = [t["task_id"] for t in status["tasks"] if t["task_id"].endswith("double_2")]
    assert last_line(gnomon("output", workflow_id, "--task", doubled[0], "--json").stdout) == "4"


def test_json_output_is_the_rest_api_s(gnomon, dags_file, workflow_id, database_url, blob_root):
    """Scripts read runs from ``gnomon ... --json`` or from the REST API: one shape."""
    path, name = dags_file
    assert gnomon("run", f"{path}:summed", "--id", workflow_id).exit_code == 0
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "STORAGE": str(blob_root),
            "API_TOKEN": "cli-json-token",
            "TESTING": True,
        }
    )
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = "Bearer cli-json-token"

    detail = api.get(f"/api/v1/workflows/{workflow_id}").json
    assert json.loads(gnomon("status", workflow_id, "--json").stdout) == detail
    assert detail["trigger"] == "manual"
    assert len(detail["tasks"]) == 4
    listed = api.get(f"/api/v1/workflows?name={name}").json["workflows"]
    assert json.loads(gnomon("list", "--name", name, "--json").stdout) == listed


def test_reading_commands_error_paths(gnomon, workflow_id):
    one_error_line(gnomon("status", "nope"), 2, "No workflow 'nope'")
    one_error_line(gnomon("output", "nope"), 2, "No workflow 'nope'")
    bad_status = gnomon("list", "--status", "bogus")
    assert bad_status.exit_code == 2
    assert "Invalid value for '--status'" in bad_status.stderr


def test_resume_a_failed_run(gnomon, dags_file, workflow, workflow_id, tmp_path):
    path, _ = dags_file
    flag = tmp_path / "flag"
    module = __import__("scheduler.loader", fromlist=["import_target"])
    flaky = module.import_target(f"{path}:flaky")
    with pytest.raises(workflow.WorkflowExecutionError):
        workflow.run(flaky.bind(str(flag)), workflow_id=workflow_id)

    result = gnomon("resume", workflow_id)

    assert result.exit_code == 0, result.output
    assert last_line(result.stdout) == "second attempt"
    assert gnomon("resume").exit_code == 2
    assert gnomon("resume", workflow_id, "--all").exit_code == 2
    one_error_line(gnomon("resume", "nope"), 2, "No workflow 'nope'")


def test_cancel_and_delete(gnomon, dags_file, workflow, workflow_id, tmp_path):
    path, _ = dags_file
    blocked = __import__("scheduler.loader", fromlist=["x"]).import_target(f"{path}:blocked")
    ref = workflow.submit(blocked.bind(str(tmp_path / "never")), workflow_id=workflow_id)
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.RUNNING, timeout=30)

    one_error_line(gnomon("delete", workflow_id), 1, "it is still active")
    canceled = gnomon("cancel", workflow_id)
    assert canceled.exit_code == 0
    assert f"Canceled {workflow_id}" in canceled.stdout
    eventually(lambda: workflow.get_status(workflow_id) == WorkflowStatus.CANCELED, timeout=30)
    with pytest.raises(ray.exceptions.RayTaskError, match="canceled"):
        ray.get(ref, timeout=30)

    assert gnomon("delete", workflow_id).exit_code == 0
    one_error_line(gnomon("status", workflow_id), 2, f"No workflow '{workflow_id}'")
    one_error_line(gnomon("cancel", workflow_id), 2, "No workflow")
    one_error_line(gnomon("delete", workflow_id), 2, "No workflow")


@ray.remote
def approve(decision: tuple) -> dict:
    return {"key": decision[0], "payload": decision[1]}


def test_send_event(gnomon, workflow, workflow_id):
    workflow.submit(
        approve.bind(workflow.wait_for_event(workflow.HTTPListener, event_key="approve")),
        workflow_id=workflow_id,
    )

    result = gnomon("send-event", workflow_id, "approve", '{"by": "ana"}')

    assert result.exit_code == 0, result.output
    eventually(lambda: workflow.get_status(workflow_id) == OK, timeout=30, what="the approval")
    assert workflow.get_output(workflow_id) == {"key": "approve", "payload": {"by": "ana"}}
    bad = gnomon("send-event", workflow_id, "approve", "{not json")
    assert bad.exit_code == 2
    assert "not valid JSON" in bad.stderr
    one_error_line(gnomon("send-event", "nope", "approve", "{}"), 2, "No workflow 'nope'")


def test_schedule_commands(gnomon, services, registry, name, workflow):
    @registry.register(name=name, interval=3600, params={"limit": 1})
    def factory(run):
        return approve.bind(("params", run.params))

    services(registry)

    listed = json.loads(gnomon("schedules", "--json").stdout)
    mine = [item for item in listed if item["name"] == name]
    assert mine
    assert mine[0]["trigger"] == "every 3600s"
    assert mine[0]["paused"] is False
    assert name in gnomon("schedules").stdout

    assert gnomon("pause", name).exit_code == 0
    assert (
        next(i for i in json.loads(gnomon("schedules", "--json").stdout) if i["name"] == name)[
            "next_run_at"
        ]
        is None
    )
    unpaused = gnomon("unpause", name)
    assert unpaused.exit_code == 0
    assert "next run 20" in unpaused.stdout

    triggered = gnomon("trigger", name, "--param", "limit=5", "--wait")
    assert triggered.exit_code == 0, triggered.output
    workflow_id = triggered.stdout.strip().splitlines()[0]
    assert workflow_id.startswith(f"{name}@")
    assert workflow.get_output(workflow_id) == {"key": "params", "payload": {"limit": 5}}

    for command in ("pause", "unpause", "trigger"):
        one_error_line(gnomon(command, "nope"), 2, "No schedule 'nope'")


def test_db_upgrade_and_database_errors(gnomon, database_url):
    upgraded = gnomon("db", "upgrade")
    assert upgraded.exit_code == 0
    assert "up to date" in upgraded.stdout

    runner = CliRunner()
    down = runner.invoke(cli, ["list", "--database-url", "postgresql://gnomon@127.0.0.1:1/x"])
    one_error_line(down, 1, "Cannot reach the database postgresql://gnomon@127.0.0.1:1/x")
    unsupported = runner.invoke(cli, ["status", "x", "--database-url", "nonsense://"])
    one_error_line(unsupported, 2, "Unsupported database 'nonsense'")
    malformed = runner.invoke(cli, ["list", "--database-url", "not a url"])
    one_error_line(malformed, 2, "Invalid database URL not a url")
    from_env = runner.invoke(cli, ["list", "--json"], env={"GNOMON_DATABASE_URL": database_url})
    assert from_env.exit_code == 0
    assert isinstance(json.loads(from_env.stdout), list)


def test_up_refuses_bad_setups_in_one_line(tmp_path):
    runner = CliRunner()
    down = runner.invoke(cli, ["up", "--database-url", "postgresql://gnomon@127.0.0.1:1/x"])
    one_error_line(down, 1, "Cannot reach the database")
    no_dags = runner.invoke(
        cli,
        ["up", "--dags", str(tmp_path / "missing"), "--database-url", f"sqlite:///{tmp_path}/g.db"],
    )
    one_error_line(no_dags, 2, "No dags folder")


def test_pool_commands(gnomon):
    name = f"pool-{uuid.uuid4().hex[:8]}"
    created = gnomon("pool", "set", name, "--slots", "3", "--rate", "5/s")
    assert created.exit_code == 0, created.output
    assert last_line(created.stdout) == f"Created pool {name}: 3 slot(s), rate 5/s (starts)"
    paused = gnomon("pool", "set", name, "--slots", "0")  # the rate is kept
    assert last_line(paused.stdout) == f"Set pool {name}: 0 slot(s) (paused), rate 5/s (starts)"
    assert "RATE" in gnomon("pool", "list").stdout
    listed = json.loads(gnomon("pool", "list", "--json").stdout)
    mine = next(item for item in listed if item["name"] == name)
    assert mine == {
        "name": name,
        "slots": 0,
        "rate": {"limit": 5, "period_s": 1.0},
        "rate_text": "5/s",
        "used": 0,
        "queued": 0,
    }
    cleared = json.loads(gnomon("pool", "set", name, "--rate", "none", "--json").stdout)
    assert (cleared["slots"], cleared["rate"]) == (0, None)

    one_error_line(gnomon("pool", "set", "ware house", "--slots", "3"), 2, "Invalid pool name")
    one_error_line(gnomon("pool", "set", name, "--rate", "0/s"), 2, "Invalid rate '0/s'")
    one_error_line(gnomon("pool", "set", name, "--slots", "-1"), 2, "slots must be from 0")
    missing = gnomon("pool", "set", f"new-{name}", "--rate", "1/min")
    assert missing.exit_code == 2
    assert "give it --slots N" in missing.output
