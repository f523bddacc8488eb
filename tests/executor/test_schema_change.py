"""A schema change is a change to ``schema.py`` alone: every statement the store runs,
its PostgreSQL one-statement forms included, is built from the tables it is given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from executor.status import TaskStatus, WorkflowStatus
from executor.store import Checkpoint, NewTask, SqlStore, schema
from executor.store.statements import Tables

#: (table, column key, the name the scratch schema gives it instead)
RENAMED = [
    ("gnomon_tasks", "output_preview", "preview_text"),
    ("gnomon_tasks", "attempts", "attempt_count"),
    ("gnomon_workflows", "lease_expires_at", "lease_until"),
    ("gnomon_workflows", "output_preview", "result_preview"),
    ("gnomon_checkpoints", "size", "byte_size"),
]


def renamed_copy() -> sa.MetaData:
    """The schema's tables with the ``RENAMED`` columns under their new names."""
    metadata = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(metadata)
    for table, key, name in RENAMED:
        metadata.tables[table].c[key].name = name
    return metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scratch.db'}"
    return request.getfixturevalue("scratch_postgresql_url")


@pytest.fixture
def renamed_store(scratch_url: str) -> Iterator[tuple[SqlStore, sa.Engine]]:
    metadata = renamed_copy()
    engine = sa.create_engine(scratch_url)
    metadata.create_all(engine)
    store = SqlStore.create(scratch_url, tables=Tables.of(metadata))
    yield store, engine
    store.dispose()
    engine.dispose()


def _checkpoint(data: bytes) -> Checkpoint:
    return Checkpoint(kind="value", data=data, blob=None, size=len(data))


def test_the_hot_path_follows_renamed_columns(renamed_store):
    store, engine = renamed_store
    tasks = [
        NewTask("a", "m.a", [], {}),
        NewTask("b", "m.b", ["a"], {}),
        NewTask("c", "m.c", [], {}),
    ]

    assert store.create_workflow("w", "n", b"g", None, "b", tasks, {}, owner="me") is True
    assert store.create_workflow("w", "n", b"g", None, "b", tasks, {}, owner="me") is False
    store.tasks_started("w", [("a", 1.0), ("b", 2.0), ("c", 3.0)])
    # Not the output: the task-only finish (one statement on PostgreSQL).
    assert (
        store.task_finished("w", "a", _checkpoint(b"A"), "'a'", 1.0, 0, graph_output=False).outcome
        is False
    )
    # With a log: the transaction of separate statements, on both databases.
    log = (2.0, "printed\n")
    assert store.task_finished("w", "c", _checkpoint(b"C"), "'c'", 3.0, 0, log=log).outcome is False
    assert store.finished_tasks("w", ["b", "c"]) == {"c"}
    assert store.finished_tasks("w", ["b"]) == set()
    # The output: the finish that also records the workflow SUCCESSFUL.
    assert store.task_finished("w", "b", _checkpoint(b"BB"), "'b'", 2.0, 0).outcome is True

    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT task_id, status, preview_text, attempt_count FROM gnomon_tasks ORDER BY task_id"
        ).all()
        workflow = conn.exec_driver_sql(
            "SELECT status, result_preview, lease_until FROM gnomon_workflows"
        ).one()
        sizes = conn.exec_driver_sql(
            "SELECT task_id, byte_size FROM gnomon_checkpoints ORDER BY task_id"
        ).all()
    assert [tuple(r) for r in rows] == [
        ("a", TaskStatus.SUCCESSFUL.value, "'a'", 1),
        ("b", TaskStatus.SUCCESSFUL.value, "'b'", 1),
        ("c", TaskStatus.SUCCESSFUL.value, "'c'", 1),
    ]
    assert tuple(workflow) == (WorkflowStatus.SUCCESSFUL.value, "'b'", None)
    assert [tuple(r) for r in sizes] == [("a", 1), ("b", 2), ("c", 1)]
    assert store.load_checkpoint("w", "b") == _checkpoint(b"BB")


def test_batched_outcomes_follow_renamed_columns(renamed_store):
    store, engine = renamed_store
    for workflow_id in ("x", "y"):
        store.create_workflow(
            workflow_id, "n", b"g", None, "t", [NewTask("t", "m.t", [], {})], {}, owner="me"
        )

    store.finish_many(
        "me",
        [("x", WorkflowStatus.FAILED, None, "boom"), ("y", WorkflowStatus.SUCCESSFUL, "42", None)],
    )

    assert store.get_workflow("x").status == WorkflowStatus.FAILED
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT workflow_id, status, result_preview, lease_until FROM gnomon_workflows "
            "ORDER BY workflow_id"
        ).all()
    assert [tuple(r) for r in rows] == [
        ("x", WorkflowStatus.FAILED.value, None, None),
        ("y", WorkflowStatus.SUCCESSFUL.value, "42", None),
    ]


def test_the_real_schema_has_none_of_the_scratch_names():
    """The scratch names exist only in the copy: the statements above cannot have found
    them by a name typed anywhere else."""
    real = {column.name for table in schema.metadata.tables.values() for column in table.c}
    assert real.isdisjoint(name for _, _, name in RENAMED)
