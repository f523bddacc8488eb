"""A run's task graph and timeline, as the run page draws them.

The browser lays the graph out (dagre); this module decides what is drawn: one node per
task, edges from ``upstream``, and each continuation's tasks in a cluster under the task
that returned it. Past ``COLLAPSE_ABOVE`` tasks, nodes and timeline rows are groups of
tasks by function name, with counts, so a 100,000-task run stays a readable picture.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from executor.status import TaskStatus
from executor.store import TaskRecord

#: Runs with more tasks than this are drawn as groups of tasks by function name.
COLLAPSE_ABOVE = 500

#: A group takes the colour of the most telling status among its tasks.
_PRIORITY = [
    TaskStatus.FAILED,
    TaskStatus.RUNNING,
    TaskStatus.RETRYING,
    TaskStatus.WAITING,
    TaskStatus.QUEUED,
    TaskStatus.PENDING,
    TaskStatus.CANCELED,
    TaskStatus.CONTINUED,
    TaskStatus.SUCCESSFUL,
]


def task_label(task: TaskRecord) -> str:
    """The task id without its module path and its continuation prefix: ``extract_1``."""
    label = task.task_id.rsplit("/", 1)[-1]
    module = task.name.rpartition(".")[0]
    if module and label.startswith(module + "."):
        label = label[len(module) + 1 :]
    return label


def function_label(name: str) -> str:
    return name.rpartition(".")[2] or name


def group_status(statuses: Counter[TaskStatus]) -> TaskStatus:
    for status in _PRIORITY:
        if statuses.get(status):
            return status
    return TaskStatus.PENDING


def task_graph(tasks: Sequence[TaskRecord]) -> dict[str, Any]:
    """``{"collapsed", "total", "nodes", "clusters", "edges"}`` for ``run-graph.js``."""
    if len(tasks) > COLLAPSE_ABOVE:
        return _grouped_graph(tasks)
    ids = {task.task_id for task in tasks}
    nodes = []
    clusters: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    by_id = {task.task_id: task for task in tasks}
    for task in tasks:
        parent = task.parent_task_id if task.parent_task_id in ids else None
        cluster = f"c:{parent}" if parent else None
        if parent and cluster not in clusters:
            outer = by_id[parent].parent_task_id
            clusters[cluster] = {  # type: ignore[index]
                "id": cluster,
                "label": f"continuation of {task_label(by_id[parent])}",
                "parent": f"c:{outer}" if outer in ids else None,
            }
        nodes.append(
            {
                "id": task.task_id,
                "label": task_label(task),
                "status": task.status.value,
                "cluster": cluster,
                "count": 1,
            }
        )
        inside = [up for up in task.upstream if up in ids]
        edges.extend({"source": up, "target": task.task_id, "kind": "data"} for up in inside)
        siblings = [up for up in inside if by_id[up].parent_task_id == task.parent_task_id]
        if parent and not siblings:
            edges.append({"source": parent, "target": task.task_id, "kind": "continuation"})
    return {
        "collapsed": False,
        "total": len(tasks),
        "nodes": nodes,
        "clusters": list(clusters.values()),
        "edges": edges,
    }


def _grouped_graph(tasks: Sequence[TaskRecord]) -> dict[str, Any]:
    group_of = {task.task_id: f"g:{task.name}" for task in tasks}
    statuses: dict[str, Counter[TaskStatus]] = defaultdict(Counter)
    for task in tasks:
        statuses[task.name][task.status] += 1
    links: set[tuple[str, str, str]] = set()
    for task in tasks:
        target = group_of[task.task_id]
        for up in task.upstream:
            source = group_of.get(up)
            if source and source != target:
                links.add((source, target, "data"))
        parent = group_of.get(task.parent_task_id or "")
        if parent and parent != target:
            links.add((parent, target, "continuation"))
    nodes = [
        {
            "id": f"g:{name}",
            "label": f"{function_label(name)} ×{sum(counts.values())}",
            "status": group_status(counts).value,
            "cluster": None,
            "count": sum(counts.values()),
            "statuses": {status.value: n for status, n in counts.items()},
        }
        for name, counts in statuses.items()
    ]
    return {
        "collapsed": True,
        "total": len(tasks),
        "nodes": nodes,
        "clusters": [],
        "edges": [{"source": s, "target": t, "kind": k} for s, t, k in sorted(links)],
    }


@dataclass(frozen=True)
class TimelineRow:
    label: str
    status: str
    count: int
    #: Seconds from the first task's start.
    start: float
    end: float


@dataclass(frozen=True)
class Timeline:
    rows: list[TimelineRow]
    span: float
    origin: float | None
    grouped: bool

    def ticks(self, count: int = 5) -> list[float]:
        return [self.span * i / count for i in range(count + 1)]


def timeline(tasks: Sequence[TaskRecord], now: float) -> Timeline:
    """Bars from each task's start to its end (or now, while it runs), earliest first."""
    started = [task for task in tasks if task.started_at is not None]
    if not started:
        return Timeline(rows=[], span=0.0, origin=None, grouped=False)
    origin = min(_start(task) for task in started)
    grouped = len(tasks) > COLLAPSE_ABOVE
    rows: list[TimelineRow] = []
    if grouped:
        by_name: dict[str, list[TaskRecord]] = defaultdict(list)
        for task in started:
            by_name[task.name].append(task)
        totals = Counter(task.name for task in tasks)
        for name, members in by_name.items():
            counts = Counter(task.status for task in members)
            rows.append(
                TimelineRow(
                    label=f"{function_label(name)} {len(members)}/{totals[name]}",
                    status=group_status(counts).value,
                    count=len(members),
                    start=min(_start(task) for task in members) - origin,
                    end=max(_end(task, now) for task in members) - origin,
                )
            )
    else:
        rows = [
            TimelineRow(
                label=task_label(task),
                status=task.status.value,
                count=1,
                start=_start(task) - origin,
                end=_end(task, now) - origin,
            )
            for task in started
        ]
    rows.sort(key=lambda row: (row.start, row.end))
    span = max((row.end for row in rows), default=0.0)
    return Timeline(rows=rows, span=max(span, 0.001), origin=origin, grouped=grouped)


def _start(task: TaskRecord) -> float:
    assert task.started_at is not None
    return task.started_at


def _end(task: TaskRecord, now: float) -> float:
    if task.ended_at is not None:
        return task.ended_at
    if task.status in (
        TaskStatus.RUNNING,
        TaskStatus.WAITING,
        TaskStatus.CONTINUED,
        TaskStatus.RETRYING,
        TaskStatus.QUEUED,
    ):
        return now
    return _start(task)
