"""Bytes for what the edge publishes: DLQ envelopes and score snapshots."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from scoring.scores import ScoreCard


def dead_letter(raw: bytes, key: bytes | None, reason: str, detail: str, field: str | None, topic: str,
                partition: int, offset: int, now_ms: int, index: int | None = None) -> bytes:
    """The DLQ message: why, where from, and the event's original bytes (text when UTF-8, else base64).

    For an event inside a batch message, `index` is its position and the bytes are its own.
    """
    try:
        original: dict[str, str] = {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        original = {"base64": base64.b64encode(raw).decode("ascii")}
    return orjson.dumps({
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


def score_snapshot(card: ScoreCard) -> bytes:
    """The compacted `engagement.scores` value: a customer's latest score."""
    return orjson.dumps({
        "customer_id": card.customer_id,
        "account_id": card.account_id,
        "es": card.es,
        "tier": card.tier.value,
        "cer": card.cer,
        "active": card.active,
        "ts": card.as_of_ms,
        "last_event": card.last_event_ms,
    })
