"""Alerts (of customers and of accounts) to a webhook (Slack-compatible JSON), with retries and no loss.

`engage alert-sink` (streams.sink.alert_sink) consumes the alerts topic and hands each alert
here. An alert is POSTed until the receiver answers 2xx, with exponential
backoff capped at `max_backoff_s`; only then does the sink move on, so its offset is
committed only after delivery. While a receiver is down, alerts wait in Kafka: none is
lost, and after a crash one may be sent twice (at-least-once; `id` lets receivers dedupe).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from streams import codec

log = logging.getLogger("engage.webhook")

RULE_TITLES = {
    "tier_downgrade": "Tier downgrade",
    "score_drop": "Engagement score drop",
    "inactive": "Member inactive",
    "not_activated": "New member not activated",
    "account_tier_downgrade": "Account tier downgrade",
    "account_score_drop": "Account engagement drop",
}


# the traits a CS team reads first in an alert, when the customer has them (docs/traits.md)
PROFILE = (("owner", "owner"), ("plan", "plan"), ("arr", "ARR"), ("renewal_date", "renews"))


def slack_payload(alert: Mapping[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook JSON (`text` + `blocks`), with the full alert under `alert`."""
    title = RULE_TITLES.get(str(alert["rule"]), str(alert["rule"]))
    if alert.get("customer_id") is None:          # an account-level alert
        who = f"account `{alert['account_id']}`"
    else:
        who = f"customer `{alert['customer_id']}`" + (f" (account `{alert['account_id']}`)" if alert.get("account_id")
                                                        else "")
    change = f"{_brief(alert.get('before', {}))} → {_brief(alert.get('after', {}))}"
    top = sorted((row for row in alert.get("breakdown", []) if row.get("count")), key=lambda r: -r.get("es", 0))[:3]
    drivers = ", ".join(f"{r['type']} {r['count']}" for r in top) or "no scored activity in the window"
    why = alert.get("why") if isinstance(alert.get("why"), Mapping) else {}
    sentence = str(why.get("sentence") or change)     # an alert recorded before explanations: the change
    traits = alert.get("traits") if isinstance(alert.get("traits"), Mapping) else {}
    profile = " · ".join(f"{label} {traits[name]}" for name, label in PROFILE if traits.get(name) is not None)
    text = f"{title}: {who}: {sentence}" + (f" ({profile})" if profile else "")
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{who}\n{sentence}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Top drivers: {drivers}"}]},
            *([{"type": "context", "elements": [{"type": "mrkdwn", "text": profile}]}] if profile else []),
        ],
        "id": alert_id(alert),
        "alert": dict(alert),
    }


DIGEST_LINES = 50     # alerts a digest lists one by one; the rest are counted


def digest_payload(route: str, alerts: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One Slack-compatible message for a route's day of alerts: a line each (the first 50), oldest first."""
    lines = [slack_payload(alert)["text"] for alert in alerts[:DIGEST_LINES]]
    more = len(alerts) - len(lines)
    title = f"Daily digest ({route}): {len(alerts)} alert{'s' if len(alerts) != 1 else ''}"
    body = "\n".join(f"• {line}" for line in lines) + (f"\n… and {more} more (GET /alerts)" if more else "")
    return {"text": f"{title}\n{body}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{body}"}}],
            "ids": [alert_id(alert) for alert in alerts]}


def alert_id(alert: Mapping[str, Any]) -> str:
    """Stable per alert (customer, rule, instant): receivers can drop at-least-once repeats.

    The alerts topic carries it as `id` (streams.codec); an alert without one gets the same value."""
    given = alert.get("id")
    return given if isinstance(given, str) and given else codec.alert_id(
        str(alert["customer_id"]), str(alert["rule"]), alert["as_of"])


def _brief(values: Mapping[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        parts.append(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts) or "-"


class WebhookSender:
    def __init__(self, url: str, timeout_s: float = 10.0, max_backoff_s: float = 30.0) -> None:
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_backoff_s = max_backoff_s
        self.delivered = 0
        self.failures = 0
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, payload: Mapping[str, Any]) -> None:
        """POST until the receiver accepts (2xx). Never gives up; cancellation stops it."""
        attempt = 0
        while True:
            try:
                if self._session is None or self._session.closed:
                    self._session = aiohttp.ClientSession(timeout=self.timeout)
                async with self._session.post(self.url, json=payload) as response:
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"HTTP {response.status}"
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            attempt += 1
            self.failures += 1
            delay = min(self.max_backoff_s, 0.25 * 2 ** min(attempt, 10))
            log.warning("alert webhook failed (%s), attempt %d; retrying in %.1f s", problem, attempt, delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
