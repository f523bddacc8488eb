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

_found: dict[StoreConfig, Any] = {}


def manager_name(config: StoreConfig) -> str:
    digest = hashlib.sha1(f"{config.database_url}|{config.storage}".encode()).hexdigest()
    return f"gnomon-manager-{digest[:12]}"


def find_manager(config: StoreConfig) -> Any:
    """The running manager's handle (it exists while any of its workflows' tasks run)."""
    handle = _found.get(config)
    if handle is None:
        handle = ray.get_actor(manager_name(config), namespace=NAMESPACE)
        _found[config] = handle
    return handle
