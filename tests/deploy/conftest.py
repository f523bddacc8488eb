"""The deploy tests' cluster: head and worker started by ``deploy/``'s scripts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.cluster import Cluster, two_node_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Head (1 CPU) and one worker node (1 CPU), per test module: some tests kill nodes."""
    with two_node_cluster() as found:
        yield found
