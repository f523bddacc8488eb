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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``pytest -n``: a cluster of several Ray nodes keeps both cores busy as it
    starts, so the deploy tests run one at a time, on one worker."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("cluster"))
