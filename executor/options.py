"""``workflow.options``: per-task workflow options carried inside Ray's own options.

Ray Workflows stored them under Ray's ``_metadata`` option, so
``f.options(**workflow.options(...))`` and ``@workflow.options(...)`` both work; Ray
2.48 dropped ``_metadata`` from its option table, so importing Gnomon registers it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ray._common import ray_option_utils
from ray.remote_function import RemoteFunction

from executor.errors import InvalidInputError, InvalidTypeError
from executor.pools import check_pool_name, check_priority
from executor.retry import Retry

#: The key Ray Workflows used inside ``_metadata``.
WORKFLOW_OPTIONS = "workflow.io/options"
#: Ray Workflows' options, then Gnomon's execution controls.
VALID = {
    "task_id",
    "metadata",
    "catch_exceptions",
    "checkpoint",
    "timeout_s",
    "retry",
    "pool",
    "priority",
}

ray_option_utils.task_options.setdefault("_metadata", ray_option_utils.Option(dict))


class options:
    """Workflow options of a task: ``task_id``, ``metadata``, ``catch_exceptions``,
    ``checkpoint``, and the execution controls ``timeout_s`` (seconds an attempt may
    run), ``retry`` (a ``workflow.Retry``), ``pool`` (a concurrency pool's name) and
    ``priority`` (in the pool's line, highest first). Unpack into ``f.options(**...)``
    or decorate a remote function."""

    def __init__(self, **workflow_options: Any) -> None:
        unknown = set(workflow_options) - VALID
        if unknown:
            raise InvalidInputError(
                f"Invalid workflow option(s) {sorted(unknown)}; valid ones are {sorted(VALID)}"
            )
        validate_user_metadata(workflow_options.get("metadata"))
        check_controls(workflow_options)
        self.options = {"_metadata": {WORKFLOW_OPTIONS: workflow_options}}

    def keys(self) -> tuple[str, ...]:
        return ("_metadata",)

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def __call__(self, f: RemoteFunction) -> RemoteFunction:
        if not isinstance(f, RemoteFunction):
            raise InvalidInputError("workflow.options decorates Ray remote functions only")
        merged = dict(f._default_options.get("_metadata") or {})
        merged.update(self.options["_metadata"])
        f._default_options["_metadata"] = merged
        return f


def validate_user_metadata(metadata: Any) -> dict[str, Any]:
    """User metadata, of a workflow or a task: a JSON-serialisable dict (None: empty).
    Ray Workflows' checks and messages, as ``ValueError``s."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInputError("metadata must be a dict.")
    try:
        json.dumps(metadata)
    except TypeError as error:
        raise InvalidInputError(
            f"metadata must be JSON serializable, instead, we got 'TypeError: {error}'"
        ) from None
    except ValueError as error:  # a circular reference, a NaN...
        raise InvalidInputError(f"metadata must be JSON serializable: {error}") from None
    return metadata


@dataclass(frozen=True)
class TaskOptions:
    """What the executor does with a task beyond running it."""

    task_id: str | None = None
    user_metadata: dict[str, Any] = field(default_factory=dict)
    catch_exceptions: bool = False
    checkpoint: bool = True
    #: Application errors are retried only if this is True or matches the error type.
    retry_exceptions: bool | tuple[type[BaseException], ...] = False
    max_retries: int = 3
    #: Seconds an attempt may run before it is stopped (``TaskTimeoutError``).
    timeout_s: float | None = None
    #: The retry policy with backoff; None: Ray's ``max_retries``, retried at once.
    retry: Retry | None = None
    #: The concurrency pool the task takes a slot of while it runs.
    pool: str | None = None
    #: Its place in the pool's line: highest first, first come first within one.
    priority: int = 0


def check_controls(workflow_options: dict[str, Any]) -> None:
    """The execution controls among ``workflow.options``, checked where they are given
    (a one-line error, never one mid-run)."""
    timeout = workflow_options.get("timeout_s")
    if timeout is not None:
        check_timeout("timeout_s", timeout)
    retry = workflow_options.get("retry")
    if retry is not None and not isinstance(retry, Retry):
        raise InvalidTypeError(f"retry must be a workflow.Retry(...), got {retry!r}")
    if workflow_options.get("pool") is not None:
        check_pool_name(workflow_options["pool"])
    if "priority" in workflow_options:
        check_priority(workflow_options["priority"])


def check_timeout(name: str, value: Any) -> float:
    """A timeout in seconds: a positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTypeError(f"{name} must be a number of seconds, got {value!r}")
    if not value > 0 or value == float("inf"):
        raise InvalidInputError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def split_options(
    ray_options: dict[str, Any], defaults: dict[str, Any] | None = None
) -> tuple[TaskOptions, dict[str, Any]]:
    """Separate workflow options from the Ray options the task is submitted with.
    ``defaults`` are workflow options the task takes unless it gives its own (a
    registered workflow's ``pool`` and ``priority``)."""
    ray_options = dict(ray_options)
    metadata = ray_options.pop("_metadata", None) or {}
    workflow_options = {**(defaults or {}), **metadata.get(WORKFLOW_OPTIONS, {})}
    retry = ray_options.pop("retry_exceptions", False)
    max_retries = ray_options.get("max_retries", 3)
    if isinstance(retry, list):
        retry = tuple(retry)
    policy = workflow_options.get("retry")
    if policy is not None:
        # The policy decides for errors and worker deaths alike.
        retry, max_retries = policy.on, policy.max_attempts - 1
    task_options = TaskOptions(
        task_id=workflow_options.get("task_id"),
        user_metadata=dict(workflow_options.get("metadata") or {}),
        catch_exceptions=bool(workflow_options.get("catch_exceptions", False)),
        checkpoint=bool(workflow_options.get("checkpoint", True)),
        retry_exceptions=retry,
        max_retries=-1 if max_retries is None else int(max_retries),
        timeout_s=workflow_options.get("timeout_s"),
        retry=policy,
        pool=workflow_options.get("pool"),
        priority=int(workflow_options.get("priority") or 0),
    )
    # Ray retries system failures (a dead worker); the executor retries application errors
    # itself, so it can record every attempt and honour catch_exceptions after the last one.
    ray_options["retry_exceptions"] = False
    return task_options, ray_options
