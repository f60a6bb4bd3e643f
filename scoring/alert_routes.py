"""Where a customer alert goes: routes by rule, segment and owner to named webhooks, each with a
rate limit, or one digest a day ([alerts.routes.<name>], docs/alerts.md "Routes").

The first route (in name order) whose every given filter matches the alert takes it; an alert
no route takes goes to the default webhook. A route sends at most `max_per_hour` alerts in any
hour; the rest are recorded (the alerts topic, `GET /alerts`) and counted, not sent. The
webhook is a name: its URL is a deployment secret (ENGAGE_ALERT_WEBHOOKS), not configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HOUR_MS = 3_600_000
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RULES = ("tier_downgrade", "score_drop", "inactive", "not_activated")
KEYS = ("webhook", "rules", "segments", "owners", "max_per_hour", "digest")
DAY_MS = 24 * HOUR_MS
CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class RouteError(ValueError):
    """A bad route: `key` is its dotted config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


@dataclass(frozen=True, slots=True)
class AlertRoute:
    name: str
    webhook: str                        # a name in ENGAGE_ALERT_WEBHOOKS
    rules: tuple[str, ...] = ()         # empty: any rule
    segments: tuple[str, ...] = ()      # empty: any segment (or none)
    owners: tuple[str, ...] = ()        # empty: any owner (or none)
    max_per_hour: int = 0               # 0: no limit
    digest_minute: int | None = None    # minutes after midnight UTC: one digest a day then, instead of each alert

    def takes(self, rule: str, segment: str | None, owner: str | None) -> bool:
        return ((not self.rules or rule in self.rules) and (not self.segments or segment in self.segments)
                and (not self.owners or owner in self.owners))

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"webhook": self.webhook, "rules": list(self.rules), "segments": list(self.segments),
                                 "owners": list(self.owners), "max_per_hour": self.max_per_hour}
        if self.digest_minute is not None:
            table["digest"] = f"{self.digest_minute // 60:02d}:{self.digest_minute % 60:02d}"
        return table


def parse_routes(table: Mapping[str, Any]) -> tuple[AlertRoute, ...]:
    """The routes of `[alerts.routes]`, in name order; every key checked, an error naming it."""
    routes = []
    for name in sorted(table):
        key = f"alerts.routes.{name}"
        if not NAME.match(name):
            raise RouteError(key, "a route name is lower-case letters, digits, '_' or '-' (max 64)")
        body = table[name]
        if not isinstance(body, Mapping):
            raise RouteError(key, "must be a table")
        for unknown in sorted(set(body) - set(KEYS)):
            raise RouteError(f"{key}.{unknown}", f"unknown key (one of {', '.join(KEYS)})")
        webhook = body.get("webhook")
        if not isinstance(webhook, str) or not NAME.match(webhook):
            raise RouteError(f"{key}.webhook", "the name of a webhook in ENGAGE_ALERT_WEBHOOKS (lower-case, max 64)")
        lists = {field: _strings(body.get(field, []), f"{key}.{field}") for field in ("rules", "segments", "owners")}
        for rule in lists["rules"]:
            if rule not in RULES:
                raise RouteError(f"{key}.rules", f"unknown rule {rule!r} (one of {', '.join(RULES)})")
        limit = body.get("max_per_hour", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise RouteError(f"{key}.max_per_hour", "an integer >= 0 (0: no limit)")
        digest = body.get("digest")
        match = CLOCK.match(digest) if isinstance(digest, str) else None
        if digest is not None and match is None:
            raise RouteError(f"{key}.digest", "the time of day (UTC) of the daily digest, \"HH:MM\"")
        if digest is not None and limit:
            raise RouteError(f"{key}.max_per_hour", "a digest route sends one message a day: no max_per_hour")
        minute = int(match.group(1)) * 60 + int(match.group(2)) if match else None
        routes.append(AlertRoute(name, webhook, lists["rules"], lists["segments"], lists["owners"], limit, minute))
    return tuple(routes)


def _strings(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RouteError(key, "must be a list of non-empty strings")
    return tuple(dict.fromkeys(value))


def route_for(routes: Iterable[AlertRoute], rule: str, segment: str | None, owner: str | None) -> AlertRoute | None:
    """The route that takes an alert, or None (the default webhook)."""
    return next((route for route in routes if route.takes(rule, segment, owner)), None)


def within_limit(route: AlertRoute, sent_ms: list[int], now_ms: int) -> bool:
    """Whether `route` may send one more now, given when it sent in the last hour (`sent_ms`, kept
    by the caller: this drops what is older than an hour, and records the send when it is allowed)."""
    sent_ms[:] = [t for t in sent_ms if t > now_ms - HOUR_MS]
    if route.max_per_hour and len(sent_ms) >= route.max_per_hour:
        return False
    sent_ms.append(now_ms)
    return True


def next_digest(route: AlertRoute, now_ms: int) -> int:
    """When the route's next digest is due: its time of day, strictly after `now_ms`."""
    assert route.digest_minute is not None
    at = now_ms - now_ms % DAY_MS + route.digest_minute * 60_000
    return at if at > now_ms else at + DAY_MS
