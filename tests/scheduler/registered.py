"""A registered four-task workflow whose third task has a bug that a dags file edit fixes:
the run that retry, clear and fork tests start from."""

from __future__ import annotations

import textwrap
from pathlib import Path

from executor import workflow as api
from scheduler.loader import DagsFolder
from scheduler.registry import Registry
from tests.waiting import count, eventually

DAGS = """
import ray

import scheduler
from tests.waiting import mark

MARKS = {marks!r}


@ray.remote
def step(name, value):
    mark(MARKS, name)
    return value + 1


@ray.remote
def third(value):
    mark(MARKS, "s3")
    {third}


@scheduler.register(name={name!r}, params={{"start": 0}})
def four_steps(run):
    s2 = step.bind("s2", step.bind("s1", run.params["start"]))
    return step.bind("s4", third.bind(s2))
"""

BUG = "raise ValueError('the bug')"
FIX = "return value * 10"


def write_dags(folder: Path, marks: Path, name: str, third: str) -> None:
    text = DAGS.format(marks=str(marks), name=name, third=third)
    (folder / "four.py").write_text(textwrap.dedent(text))


def counts(marks: Path) -> list[int]:
    return [count(marks, name) for name in ("s1", "s2", "s3", "s4")]


def failed_run(services, workflow, dags: Path, marks: Path, name: str):
    """A registered run that failed in its third task: (registry, folder, workflow id)."""
    write_dags(dags, marks, name, BUG)
    registry = Registry()
    folder = DagsFolder(dags, registry)
    folder.refresh()
    service = services(registry)
    workflow_id = service.trigger(name)
    eventually(lambda: workflow.get_status(workflow_id) == api.FAILED, 60, "the run to fail")
    return registry, folder, workflow_id
