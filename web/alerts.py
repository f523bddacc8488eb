"""Notifications on the dashboard: a run's deliveries (REST and its page's section), and
the ``late`` mark. Notifier URLs are shown masked only (``mask_target``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, jsonify

from executor.errors import WorkflowNotFoundError
from executor.store.records import NotificationRecord, mask_target, notification_json
from web.services import store

bp = Blueprint("alerts", __name__, url_prefix="/api/v1")


def notifications(workflow_id: str) -> list[NotificationRecord]:
    """The run's notifications; a run that never started has some too (a missed
    deadline), so only an id with neither a run nor a notification is unknown."""
    found = store().list_notifications(workflow_id)
    if not found:
        store().get_workflow(workflow_id)  # raises WorkflowNotFoundError: a 404
    return found


@bp.get("/workflows/<path:workflow_id>/notifications")
def list_notifications(workflow_id: str) -> Response:
    return jsonify(notifications=[notification_json(n) for n in notifications(workflow_id)])


def _notifications_of(workflow_id: str) -> list[dict[str, Any]]:
    """For the run page's Notifications section."""
    try:
        found = notifications(workflow_id)
    except WorkflowNotFoundError:
        return []
    return [{**notification_json(n), "record": n} for n in found]


def init_app(app: Flask) -> None:
    app.add_template_global(_notifications_of, "notifications_of")
    app.add_template_filter(mask_target, "masked")
    app.register_blueprint(bp)
