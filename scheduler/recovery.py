"""Recovery: resume the workflows whose owner died, on start and then periodically.

A workflow reads RESUMABLE when its owner's lease expired or its process is gone
(``SqlStore``). Resuming goes through the workflow manager, which takes the lease with a
compare-and-set, so when two schedulers recover at once exactly one of them runs it;
the other's attempt fails and is ignored. FAILED and CANCELED workflows are left alone:
an operator resumes those.
"""

from __future__ import annotations

import logging
import os

from executor import workflow
from scheduler.runs import RunLauncher

log = logging.getLogger(__name__)

#: Seconds between recovery passes.
RECOVERY_INTERVAL = float(os.environ.get("GNOMON_RECOVERY_INTERVAL", "10"))


def recover(launcher: RunLauncher) -> list[str]:
    """Resume every RESUMABLE workflow; returns the ids handed to a manager."""
    try:
        resumed = workflow.resume_all(include_failed=False)
    except Exception:  # the database may be restarting: the next pass tries again
        log.exception("Recovery pass failed")
        return []
    for workflow_id, ref in resumed:
        launcher.watch(workflow_id, ref)
    if resumed:
        log.info(
            "Recovery resumed %d workflow(s): %s",
            len(resumed),
            ", ".join(workflow_id for workflow_id, _ in resumed),
        )
    return [workflow_id for workflow_id, _ in resumed]
