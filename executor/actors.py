"""The names of Gnomon's cluster-wide actors, and finding them.

There is one workflow manager per cluster and database (``executor.manager``), a
detached actor named after the database. Code that only talks to it (a worker expanding
a continuation that waits) finds it by name here, without the manager's class.
"""

from __future__ import annotations

import hashlib
from typing import Any

import ray

from executor.config import StoreConfig

NAMESPACE = "gnomon"

_caches: list[dict[Any, Any]] = []
_session: str | None = None


def session_cache() -> dict[Any, Any]:
    """A dict of handles on this Ray session's actors, emptied when the process joins
    another session (``ray.shutdown()`` then ``ray.init()``): its handles are dead."""
    cache: dict[Any, Any] = {}
    _caches.append(cache)
    return cache


def same_session() -> None:
    """Empty every ``session_cache`` if Ray was started anew since the last call."""
    global _session
    context = ray.get_runtime_context()
    # A job id repeats across clusters (each starts at 01000000); the GCS address not.
    current = f"{context.gcs_address}/{context.get_job_id()}"
    if current != _session:
        for cache in _caches:
            cache.clear()
        _session = current


_found = session_cache()


def manager_name(config: StoreConfig) -> str:
    digest = hashlib.sha1(f"{config.database_url}|{config.storage}".encode()).hexdigest()
    return f"gnomon-manager-{digest[:12]}"


def find_manager(config: StoreConfig) -> Any:
    """The running manager's handle (it exists while any of its workflows' tasks run)."""
    same_session()
    handle = _found.get(config)
    if handle is None:
        handle = ray.get_actor(manager_name(config), namespace=NAMESPACE)
        _found[config] = handle
    return handle
