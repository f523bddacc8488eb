"""The deploy tests' cluster: a head and two worker hosts from ``deploy/``'s scripts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.hosts import Cluster, scratch
from tests.deploy.hosts import cluster as start_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head (no CPUs) and two worker hosts (1 CPU each), per test module: some tests kill
    hosts."""
    with start_cluster(workers=2) as found:
        yield found


@pytest.fixture
def hosts_root() -> Iterator[Path]:
    """Where a test's own hosts live: short paths, for Ray's unix sockets."""
    with scratch() as folder:
        yield folder
