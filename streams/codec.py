"""Bytes for what the edge publishes: DLQ envelopes, score messages and alerts.

Every output carries an `id` that is the same whenever the same output is published
again (delivery is at-least-once: see streams/state/outbox.py), so a consumer drops repeats by it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from scoring.account_alerts import AccountAlert
from scoring.alerts import Alert
from scoring.scores import ScoreCard


def stable_id(*parts: object) -> str:
    """24 hex characters of a hash of the parts: the same parts always give the same id."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def alert_id(customer_id: str, rule: str, as_of_ms: int) -> str:
    """An alert is one customer, one rule, one instant."""
    return stable_id(customer_id, rule, as_of_ms)


def dead_letter_id(topic: str, partition: int, offset: int, index: int | None) -> str:
    """A dead letter is its source position: the same rejection of a redelivered message has the same id."""
    return stable_id("dlq", topic, partition, offset, index)


def score_id(customer_id: str, as_of_ms: int) -> str:
    return stable_id("score", customer_id, as_of_ms)


def dead_letter_message(raw: bytes, key: bytes | None, reason: str, detail: str, field: str | None, topic: str,
                partition: int, offset: int, now_ms: int, index: int | None = None) -> bytes:
    """The DLQ message: why, where from, and the event's original bytes (text when UTF-8, else base64).

    For an event inside a batch message, `index` is its position and the bytes are its own.
    """
    try:
        original: dict[str, str] = {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        original = {"base64": base64.b64encode(raw).decode("ascii")}
    return orjson.dumps({
        "id": dead_letter_id(topic, partition, offset, index),
        "reason": reason,
        "detail": detail,
        "field": field,
        "source": {"topic": topic, "partition": partition, "offset": offset, "index": index,
                   "key": key.decode("utf-8", "replace") if key else None},
        "rejected_at": now_ms,
        "original": original,
    })


def original_bytes(envelope: dict[str, Any]) -> bytes:
    """The original message bytes of a decoded DLQ envelope."""
    original = envelope["original"]
    return original["text"].encode("utf-8") if "text" in original else base64.b64decode(original["base64"])


def score_message(card: ScoreCard) -> bytes:
    """The compacted `engagement.scores` value: a customer's latest score."""
    return orjson.dumps({
        "id": score_id(card.customer_id, card.as_of_ms),
        "customer_id": card.customer_id,
        "account_id": card.account_id,
        "es": card.es,
        "tier": card.tier.value,
        "cer": card.cer,
        "active": card.active,
        "ts": card.as_of_ms,
        "last_event": card.last_event_ms,
    })


def account_alert_message(alert: AccountAlert) -> bytes:
    """An account alert on `engagement.alerts`: `customer_id` null, `account_id` set, and its id
    (one account, one rule, one instant)."""
    return orjson.dumps({"id": alert_id(f"account:{alert.account_id}", alert.rule.value, alert.as_of_ms),
                         **alert.to_dict()})


def alert_message(alert: Alert) -> bytes:
    """The `engagement.alerts` value: the alert and its id."""
    return orjson.dumps({"id": alert_id(alert.customer_id, alert.rule.value, alert.as_of_ms), **alert.to_dict()})
