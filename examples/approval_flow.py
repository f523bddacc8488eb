"""An approval flow: prepare a change, wait for a human to approve it, then apply it.

Trigger-only. Start it, then approve it from the dashboard, the API or the CLI:

    gnomon trigger approval_flow --param change='"rotate the API keys"'
    gnomon send-event 'approval_flow@<date>' approve '{"by": "ana", "approved": true}'

While it waits it holds no CPU on the cluster; an approval sent early is kept.
"""

from __future__ import annotations

import ray

import scheduler


@ray.remote
def prepare(change: str) -> dict:
    return {"change": change, "plan": [f"check {change}", f"apply {change}", "verify"]}


@ray.remote
def apply(plan: dict, decision: tuple) -> dict:
    _key, payload = decision
    payload = payload or {}
    if not payload.get("approved", False):
        return {"change": plan["change"], "applied": False, "by": payload.get("by")}
    return {
        "change": plan["change"],
        "applied": True,
        "by": payload.get("by"),
        "steps": plan["plan"],
    }


@scheduler.register(params={"change": "rotate the API keys"})
def approval_flow(run: scheduler.Run):
    from executor import workflow

    plan = prepare.bind(run.params["change"])
    decision = workflow.wait_for_event(workflow.HTTPListener, event_key="approve")
    return apply.bind(plan, decision)
