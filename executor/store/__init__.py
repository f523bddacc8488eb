"""The SQL store: workflows, tasks, checkpoints and leases. See ``SqlStore`` for the contract."""

from executor.store.records import Checkpoint, NewTask, TaskLog, TaskRecord, WorkflowRecord
from executor.store.sql import LEASE_TTL, SqlStore, owner_id

__all__ = [
    "LEASE_TTL",
    "Checkpoint",
    "NewTask",
    "TaskLog",
    "SqlStore",
    "TaskRecord",
    "WorkflowRecord",
    "owner_id",
]
