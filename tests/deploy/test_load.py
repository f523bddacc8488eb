"""Load on one deployment (issue 6): ``bench/load.py`` run as CI runs everything else.

2,000 three-task workflows, half through the Python API and half through the REST API,
at most 50 in flight, on a Ray head from ``deploy/ray-head.sh`` with ``gnomon up`` joined
to it, on a scratch PostgreSQL database. The benchmark prints its figures; this test
holds the outcome to account: every run finished, every task ran exactly once, the
dashboard answered every request, and ``gnomon up``'s memory stayed flat.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

WORKFLOWS = 2000
#: Allowed growth of gnomon up's resident memory over the load, after a warm-up. A leak
#: of a few tens of KiB per workflow would pass 100 MiB over 2,000 of them.
RSS_GROWTH_MIB = 60


def test_two_thousand_workflows_through_both_apis():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--workflows", str(WORKFLOWS), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(figures, indent=2))  # shown with -s: the load's figures

    assert figures["python_api"] == WORKFLOWS // 2
    assert figures["rest_api"] == WORKFLOWS // 2
    # Warm-up runs included: each SUCCESSFUL, each task's marker created exactly once
    # (a second run of a task fails on its exclusive create).
    total = figures["expected_markers"] // 3
    assert figures["outcome"] == {"SUCCESSFUL": total, "markers": 3 * total}
    assert figures["dashboard_requests"] > 0
    assert figures["dashboard_errors"] == []
    rss = figures["rss_mib"]
    assert rss["after_load"] - rss["after_warm_up"] < RSS_GROWTH_MIB, rss
