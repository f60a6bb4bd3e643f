"""Bytes for what the edge stores and publishes: customer records, DLQ envelopes, snapshots.

A customer's record is one compact JSON document (its core state plus the alert rules'
memory), so a batch reads and writes each customer with one command and hysteresis
survives restarts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from scoring import kpis
from scoring.alerts import RuleState, Snapshot
from scoring.scores import ScoreCard
from scoring.state import CustomerState, SessionStats

FORMAT = 1


@dataclass
class CustomerRecord:
    state: CustomerState
    alert_states: dict[str, RuleState] = field(default_factory=dict)
    snapshot: Snapshot | None = None


def encode_record(record: CustomerRecord) -> bytes:
    s = record.state
    doc: dict[str, Any] = {
        "v": FORMAT,
        "w": s.watermark_ms,
        "b": s.buckets,
        "la": s.last_active_ms,
        "lr": s.last_aer_ms,
        "f": s.features,
        "m": s.membership,
        "ss": {sid: [x.anchor_ms, x.pages, x.actions, int(x.ended)] for sid, x in s.sessions.items()},
        "a": s.account,
        "g": s.segment,
        "seen": s.seen,
    }
    if record.alert_states:
        doc["al"] = {rule: [int(r.active), r.baseline, r.level] for rule, r in record.alert_states.items()}
    if record.snapshot is not None:
        doc["sn"] = [record.snapshot.tier.value, record.snapshot.es]
    return orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS)


def decode_record(customer_id: str, raw: bytes) -> CustomerRecord:
    doc = orjson.loads(raw)
    if doc.get("v") != FORMAT:
        raise ValueError(f"customer record of {customer_id!r} has unknown format {doc.get('v')!r}")
    state = CustomerState(
        customer_id=customer_id,
        watermark_ms=doc["w"],
        buckets={int(b): counters for b, counters in doc["b"].items()},
        last_active_ms=doc["la"],
        last_aer_ms=doc["lr"],
        features=doc["f"],
        membership=[tuple(entry) for entry in doc["m"]],
        sessions={sid: SessionStats(x[0], x[1], x[2], bool(x[3])) for sid, x in doc["ss"].items()},
        account=tuple(doc["a"]) if doc["a"] else None,
        segment=tuple(doc["g"]) if doc["g"] else None,
        seen=doc["seen"],
    )
    alerts = {rule: RuleState(bool(x[0]), x[1], x[2]) for rule, x in doc.get("al", {}).items()}
    snapshot = Snapshot(kpis.Tier(doc["sn"][0]), doc["sn"][1]) if "sn" in doc else None
    return CustomerRecord(state, alerts, snapshot)


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
