"""Where a workflow's durable state lives, and the per-process handles on it."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from executor.checkpoint import BlobStore
from executor.store import SqlStore

#: Gnomon's data directory: the SQLite default, blobs, the generated API token.
DATA_DIR = Path(os.environ.get("GNOMON_HOME", Path.home() / ".gnomon"))


@dataclass(frozen=True)
class StoreConfig:
    database_url: str
    storage: str

    @staticmethod
    def resolve(database_url: str | None = None, storage: str | None = None) -> StoreConfig:
        url = database_url or os.environ.get("GNOMON_DATABASE_URL")
        if not url:
            url = f"sqlite:///{DATA_DIR / 'gnomon.db'}"
        blobs = storage or os.environ.get("GNOMON_STORAGE") or str(DATA_DIR / "blobs")
        return StoreConfig(database_url=url, storage=blobs)


class Handles(NamedTuple):
    """A process's open handles on one ``StoreConfig``."""

    store: SqlStore
    blobs: BlobStore


_handles: dict[StoreConfig, Handles] = {}
_lock = threading.Lock()


def handles(config: StoreConfig) -> Handles:
    """One engine per process and database: Ray workers reuse it across tasks."""
    found = _handles.get(config)
    if found is None:
        with _lock:
            found = _handles.get(config)
            if found is None:
                found = Handles(SqlStore.create(config.database_url), BlobStore(config.storage))
                _handles[config] = found
    return found


def close(config: StoreConfig) -> None:
    """Close this process's handles on ``config`` (the next ``handles`` opens anew)."""
    with _lock:
        found = _handles.pop(config, None)
    if found is not None:
        found.store.dispose()
