"""What a registered workflow is to be told about, and where: ``notify=`` URLs, the
``on_failure=``, ``on_success=`` and ``on_retry=`` callables, and deadlines.

A notifier is a URL:

- ``webhook+https://host/path`` (or ``webhook+http://``): a JSON POST;
- ``slack+https://hooks.slack.com/services/...``: a Slack-compatible ``{"text": ...}``;
- ``mailto:ops@example.com``: an email through ``$GNOMON_SMTP_URL``.

It gets ``failure`` and ``deadline_missed`` events unless its fragment names the events it
wants: ``slack+https://hooks.slack.com/services/T/B/X#failure,success,retry``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from executor.store.records import EVENTS, NotifyRoute, RunAlerts, mask_target
from scheduler.errors import InvalidScheduleError

#: The notifier URL schemes Gnomon delivers to.
SCHEMES = ("webhook+https", "webhook+http", "slack+https", "mailto")
#: The events a notifier gets when its URL names none: what an operator must hear about.
DEFAULT_EVENTS = ("failure", "deadline_missed")
#: Each callable option, and the event it is called for.
CALLBACKS = {"on_failure": "failure", "on_success": "success", "on_retry": "retry"}
#: A callable's route target: ``callback:on_failure``.
CALLBACK = "callback:"


@dataclass(frozen=True)
class Alerts:
    """A schedule's notification options, checked."""

    notify: tuple[str, ...] = ()
    on_failure: Callable[[Any], Any] | None = None
    on_success: Callable[[Any], Any] | None = None
    on_retry: Callable[[Any], Any] | None = None
    #: Seconds after the logical date by which a run should have succeeded.
    deadline: float | None = None
    #: Seconds after a run starts by which it should have succeeded.
    deadline_after_start: float | None = None

    @classmethod
    def parse(
        cls,
        notify: Iterable[str] | str | None = None,
        on_failure: Any = None,
        on_success: Any = None,
        on_retry: Any = None,
        deadline: Any = None,
        deadline_after_start: Any = None,
    ) -> Alerts:
        """Check the options of ``scheduler.register``; raises ``InvalidScheduleError``."""
        if isinstance(notify, str):
            notify = [notify]
        for option, value in (
            ("on_failure", on_failure),
            ("on_success", on_success),
            ("on_retry", on_retry),
        ):
            if value is not None and not callable(value):
                raise InvalidScheduleError(
                    f"{option} must be a callable taking the run, got {type(value).__name__}"
                )
        return cls(
            notify=tuple(check_notifier(url) for url in notify or ()),
            on_failure=on_failure,
            on_success=on_success,
            on_retry=on_retry,
            deadline=check_deadline("deadline", deadline),
            deadline_after_start=check_deadline("deadline_after_start", deadline_after_start),
        )

    def routes(self, defaults: Sequence[str] = ()) -> tuple[NotifyRoute, ...]:
        """Where a run's events go: each notifier (the schedule's and the defaults) for
        the events it wants, and each callable for its own."""
        found: dict[tuple[str, str], NotifyRoute] = {}
        for url in (*self.notify, *defaults):
            for event in events_of(url):
                found[(event, url)] = NotifyRoute(event, url)
        for option, event in CALLBACKS.items():
            if getattr(self, option) is not None:
                target = CALLBACK + option
                found[(event, target)] = NotifyRoute(event, target)
        return tuple(found.values())

    def run_alerts(
        self,
        defaults: Sequence[str],
        logical_date: float | None,
        started_at: float,
    ) -> RunAlerts | None:
        """What a run is created with: its routes and its deadline (the earlier of the
        two, where both are set; ``logical_date`` None: a run with no deadline of that
        kind, such as a backfill's)."""
        deadlines = []
        if self.deadline is not None and logical_date is not None:
            deadlines.append(logical_date + self.deadline)
        if self.deadline_after_start is not None:
            deadlines.append(started_at + self.deadline_after_start)
        routes = self.routes(defaults)
        if not routes and not deadlines:
            return None
        return RunAlerts(routes=routes, deadline_at=min(deadlines) if deadlines else None)

    def callback(self, target: str) -> Callable[[Any], Any] | None:
        """The callable behind a ``callback:on_failure`` target."""
        option = target.removeprefix(CALLBACK)
        return getattr(self, option, None) if option in CALLBACKS else None


def check_notifier(url: Any) -> str:
    """A notifier URL Gnomon can deliver to, or ``InvalidScheduleError`` in one line (the
    URL masked: it may hold a secret)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidScheduleError(f"A notifier must be a URL string, got {url!r}")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in SCHEMES:
        raise InvalidScheduleError(
            f"Unknown notifier scheme {scheme or url!r} in {mask_target(url)}: use "
            "webhook+https://, webhook+http://, slack+https:// or mailto:"
        )
    if scheme == "mailto":
        address = url[len("mailto:") :].split("#", 1)[0]
        if "@" not in address:
            raise InvalidScheduleError(f"A mailto: notifier needs an address, got {url!r}")
    else:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        if not host:
            raise InvalidScheduleError(f"Notifier {mask_target(url)} has no host")
    events_of(url)
    return url


def events_of(url: str) -> tuple[str, ...]:
    """The events a notifier wants: its URL's fragment, else ``DEFAULT_EVENTS``."""
    _, _, fragment = url.partition("#")
    if not fragment:
        return DEFAULT_EVENTS
    wanted = tuple(dict.fromkeys(part.strip() for part in fragment.split(",") if part.strip()))
    unknown = [event for event in wanted if event not in EVENTS]
    if unknown or not wanted:
        raise InvalidScheduleError(
            f"Unknown notification event(s) {', '.join(unknown) or fragment!r} in "
            f"{mask_target(url)}: use {', '.join(EVENTS)}"
        )
    return wanted


def check_deadline(option: str, value: Any) -> float | None:
    """A deadline as seconds: a positive ``timedelta`` or number."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise InvalidScheduleError(
            f"{option} must be a positive timedelta or number of seconds, got {value!r}"
        )
    if seconds == float("inf"):
        raise InvalidScheduleError(f"{option} must be finite, got {value!r}")
    return float(seconds)


def default_notifiers(text: str | None = None) -> tuple[str, ...]:
    """``$GNOMON_NOTIFY`` (or ``text``): notifier URLs separated by spaces (a comma
    separates a URL's events), for every schedule."""
    raw = os.environ.get("GNOMON_NOTIFY", "") if text is None else text
    return tuple(check_notifier(url) for url in raw.split())
