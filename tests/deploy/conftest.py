"""The deploy tests' cluster: a head and two worker hosts from ``deploy/``'s scripts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.hosts import Cluster, scratch
from tests.deploy.hosts import cluster as start_cluster


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    """Head (no CPUs) and two worker hosts (1 CPU each), shared by the deploy tests: a
    cluster takes both cores most of a minute to start. A test that kills a worker host
    boots another before it ends, so the next finds two."""
    with start_cluster(workers=2) as found:
        yield found


@pytest.fixture
def hosts_root() -> Iterator[Path]:
    """Where a test's own hosts live: short paths, for Ray's unix sockets."""
    with scratch() as folder:
        yield folder
