"""Sending one notification: a webhook's JSON POST, a Slack message, an email, or a call
of a schedule's ``on_failure``/``on_success``/``on_retry``.

Every error comes out as ``DeliveryError`` with a one-line reason that never holds the
notifier's secrets (its password, path or query), so it can go into the outbox, the
dashboard and the log as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from executor.store.records import NotificationRecord, WorkflowRecord, iso, mask_target
from scheduler.errors import SchedulerError
from scheduler.registry import parse_logical_date

#: Seconds a notifier may take to answer before the attempt counts as failed.
SEND_TIMEOUT = float(os.environ.get("GNOMON_NOTIFY_TIMEOUT", "10"))
#: The longest error text put in a message.
MAX_ERROR = 2000

_VERBS = {
    "failure": "failed",
    "success": "succeeded",
    "retry": "is retrying a task",
    "deadline_missed": "missed its deadline",
}
_ICONS = {"failure": "❌", "success": "✅", "retry": "🔁", "deadline_missed": "⏰"}


class DeliveryError(SchedulerError):
    """A notification could not be delivered; the message is safe to show."""


@dataclass(frozen=True)
class RunInfo:
    """A run as ``on_failure``, ``on_success`` and ``on_retry`` receive it, and as every
    message describes it."""

    workflow_id: str
    name: str
    #: ``failure``, ``success``, ``retry`` or ``deadline_missed``.
    event: str
    #: The run's status when it happened (None: a tick that never started).
    status: str | None
    error: str | None
    logical_date: datetime | None
    #: The run's page on the dashboard (None when no base URL is known).
    url: str | None
    #: The retried task, for ``retry``.
    task_id: str | None = None
    #: When it happened: the run's start for an outcome, the deadline for a missed one.
    occurred_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("logical_date", "occurred_at"):
            data[key] = iso(data[key])
        return data

    @property
    def summary(self) -> str:
        """``nightly@2026-01-01T00:00:00Z failed: ValueError: boom``."""
        text = (
            f"{_ICONS.get(self.event, '')} {self.workflow_id} {_VERBS.get(self.event, self.event)}"
        )
        if self.event == "retry" and self.task_id:
            text += f" ({self.task_id})"
        if self.event == "deadline_missed":
            text += f" (status: {self.status or 'not started'})"
        reason = _last_line(self.error)
        return f"{text}: {reason}".strip() if reason else text.strip()


def run_info(
    notification: NotificationRecord, record: WorkflowRecord | None, base_url: str | None
) -> RunInfo:
    """What a notification says about its run, as stored with the event; the run's record
    (None if it never started) gives its logical date."""
    logical = None
    text = (record.user_metadata.get("logical_date") if record is not None else None) or (
        notification.workflow_id.rsplit("@", 1)[1] if "@" in notification.workflow_id else None
    )
    if isinstance(text, str):
        try:
            logical = parse_logical_date(text)
        except ValueError:
            logical = None
    url = None
    if base_url:
        url = f"{base_url.rstrip('/')}/runs/{quote(notification.workflow_id, safe='@:/')}"
    return RunInfo(
        workflow_id=notification.workflow_id,
        name=notification.name,
        event=notification.event,
        status=notification.status,
        error=(notification.error or "")[-MAX_ERROR:] or None,
        logical_date=logical,
        url=url,
        task_id=notification.subject or None,
        occurred_at=datetime.fromtimestamp(notification.occurrence, timezone.utc),
    )


def idempotency_key(notification: NotificationRecord) -> str:
    """The same for every attempt at one event for one notifier."""
    key = "|".join(
        [
            notification.workflow_id,
            notification.event,
            notification.subject,
            repr(notification.occurrence),
            notification.notifier,
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def send(notification: NotificationRecord, info: RunInfo, timeout: float | None = None) -> None:
    """Deliver to a notifier URL within ``timeout`` (``SEND_TIMEOUT``); raises
    ``DeliveryError``."""
    timeout = SEND_TIMEOUT if timeout is None else timeout
    target = notification.target.split("#", 1)[0]
    try:
        if target.startswith("webhook+"):
            body = {**info.as_json(), "notification_id": idempotency_key(notification)}
            _post(target.removeprefix("webhook+"), body, notification, timeout)
        elif target.startswith("slack+"):
            text = info.summary if not info.url else f"{info.summary}\n<{info.url}|Open the run>"
            _post(target.removeprefix("slack+"), {"text": text}, notification, timeout)
        elif target.startswith("mailto:"):
            _mail(target.removeprefix("mailto:"), info, notification, timeout)
        else:
            raise DeliveryError(f"Gnomon cannot deliver to {mask_target(target)}")
    except DeliveryError:
        raise
    except Exception as error:  # anything else a send raised: say what, never where
        raise DeliveryError(_scrub(f"{type(error).__name__}: {error}", target)) from None


def _post(url: str, body: dict[str, Any], notification: NotificationRecord, timeout: float) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "gnomon",
            "Idempotency-Key": idempotency_key(notification),
        },
    )
    shown = mask_target(notification.target.split("#", 1)[0])
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
    except urllib.error.HTTPError as error:
        raise DeliveryError(f"HTTP {error.code} from {shown}") from None
    except urllib.error.URLError as error:
        reason = _scrub(str(error.reason), url)
        raise DeliveryError(f"{shown} unreachable: {reason}") from None
    except TimeoutError:
        raise DeliveryError(f"{shown} did not answer within {timeout:g} s") from None


def _mail(address: str, info: RunInfo, notification: NotificationRecord, timeout: float) -> None:
    smtp_url = os.environ.get("GNOMON_SMTP_URL")
    if not smtp_url:
        raise DeliveryError("GNOMON_SMTP_URL is not set: mailto: notifiers need an SMTP server")
    server = urlsplit(smtp_url)
    options = {key: values[-1] for key, values in parse_qs(server.query).items()}
    message = EmailMessage()
    message["Subject"] = f"[Gnomon] {info.summary}"[:200]
    message["From"] = options.get("from") or f"gnomon@{socket.gethostname()}"
    message["To"] = address
    message["Message-ID"] = f"<{idempotency_key(notification)}@gnomon>"
    lines = [info.summary, ""]
    lines += [f"{key}: {value}" for key, value in info.as_json().items() if value is not None]
    message.set_content("\n".join(lines) + "\n")
    secure = server.scheme == "smtps"
    port = server.port or (465 if secure else 25)
    host = server.hostname or "localhost"
    try:
        if secure:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if options.get("starttls") in ("1", "true", "yes"):
                client.starttls(context=ssl.create_default_context())
            if server.username:
                client.login(server.username, server.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        reason = _scrub(f"{type(error).__name__}: {error}", smtp_url)
        raise DeliveryError(f"SMTP {host}:{port} refused the mail: {reason}") from None


def _scrub(text: str, url: str) -> str:
    """``text`` without the secrets of ``url`` (its password, path and query)."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password, parts.path, parts.query, url]
    except ValueError:
        secrets = [url]
    for secret in sorted((s for s in secrets if s and len(s) > 1), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())[:500]


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
