"""Waiting: ``sleep``, ``wait_for_event``, listeners, and the built-in mailbox.

A wait is a task of its own whose output gates downstream tasks, as in Ray Workflows.
It does not run on a CPU worker: the manager actor (zero CPUs, asyncio) awaits it as a
coroutine, so thousands of waiting workflows hold no CPU slot. A sleep's wake time is
recorded once; a sleep longer than ``SUSPEND_AFTER`` suspends the whole workflow in the
database until the scheduler (or any resume) wakes it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ray
from ray.dag import DAGNode

from executor.dag import register_user_module
from executor.errors import InvalidInputError, InvalidTypeError, WorkflowError

#: Sleeps longer than this (seconds) park the workflow in the database instead of a coroutine.
SUSPEND_AFTER = float(os.environ.get("GNOMON_SUSPEND_AFTER", "60"))
#: The mailbox's size limit for one payload, as JSON text.
MAX_PAYLOAD_BYTES = 1 << 20


class EventListener:
    """Ray Workflows' listener contract; subclass it and pass the class to ``wait_for_event``.

    ``poll_for_event`` returns the event; ``event_checkpointed`` is called once the event is
    durably recorded as the waiting task's output (commit a queue offset there), and again
    on a resume if a crash came in between. Each call runs on an event loop of its own, in
    a thread of the manager's process, so a listener that blocks holds up only itself.
    """

    def __init__(self) -> None:
        pass

    async def poll_for_event(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def event_checkpointed(self, event: Any) -> None:
        pass


class HTTPListener(EventListener):
    """The built-in mailbox: events sent with ``send_event`` (or the REST API, or the CLI).

    ``wait_for_event(HTTPListener, event_key="approve")`` returns ``(event_key, payload)``.
    The manager consumes the event in the transaction that checkpoints the waiting task.
    """

    async def poll_for_event(self, event_key: str = "default") -> Any:  # pragma: no cover
        raise WorkflowError("HTTPListener events are delivered by the workflow manager")


class WorkflowSuspended(WorkflowError):
    """Raised by a long sleep: the workflow parks in the database until ``wake_at``."""

    def __init__(self, workflow_id: str, wake_at: float) -> None:
        super().__init__(f"Workflow {workflow_id!r} sleeps until {wake_at:.3f}")
        self.workflow_id = workflow_id
        self.wake_at = wake_at


def _waits_in_manager(*_: Any) -> Any:
    raise WorkflowError("waits run in the workflow manager, not on a worker")


def _builtin(kind: str) -> Any:
    def wait(*args: Any) -> Any:
        return _waits_in_manager(*args)

    wait.__gnomon_kind__ = kind  # type: ignore[attr-defined]
    wait.__gnomon_name__ = f"workflow.{kind}"  # type: ignore[attr-defined]
    wait.__qualname__ = wait.__name__ = kind
    return ray.remote(num_cpus=0)(wait)


_sleep = _builtin("sleep")
_wait_for_event = _builtin("wait_for_event")
_event_committed = _builtin("event_committed")


def sleep(seconds: float) -> DAGNode:
    """A task that finishes ``seconds`` after it starts; bind it into a DAG."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidTypeError(f"workflow.sleep takes a number of seconds, got {seconds!r}")
    # A negative duration ends at once, as in Ray Workflows.
    return _sleep.bind(max(0.0, float(seconds)))


def wait_for_event(listener: type[EventListener], *args: Any, **kwargs: Any) -> DAGNode:
    """A task whose output is the next event from ``listener``."""
    if not (isinstance(listener, type) and issubclass(listener, EventListener)):
        what = listener.__name__ if isinstance(listener, type) else repr(listener)
        raise InvalidTypeError(
            f"Event listener type is {what}, which is not a subclass of workflow.EventListener"
        )
    register_user_module(listener.__module__)
    polled = _wait_for_event.bind(listener, list(args), dict(kwargs))
    if issubclass(listener, HTTPListener):
        return polled  # the mailbox consumes its event in the checkpoint's transaction
    # As in Ray Workflows, the event is committed (``event_checkpointed``) by a task of
    # its own after the polled event's checkpoint: a crash between the two commits it on
    # the resume.
    return _event_committed.bind(listener, polled)


def mailbox_key(args: list[Any], kwargs: dict[str, Any]) -> str:
    key = kwargs.get("event_key", args[0] if args else "default")
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"event_key must be a non-empty string, got {key!r}")
    return key


def encode_payload(payload: Any) -> str:
    """Payloads are JSON, never pickled; reject anything else with a clear message."""
    try:
        text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"Event payload must be JSON: {error}") from None
    size = len(text.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInputError(
            f"Event payload is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES} (1 MiB)"
        )
    return text


def check_event_key(event_key: Any) -> str:
    if not isinstance(event_key, str) or not event_key or len(event_key) > 255:
        raise InvalidInputError(
            f"event_key must be a non-empty string of at most 255 characters, got {event_key!r}"
        )
    return event_key
