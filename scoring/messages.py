"""Message framing: one Kafka message carries one event, a JSON array of events, or NDJSON.

High-volume producers batch many events into a message to save per-message overhead.
Every event inside is validated on its own: a bad one is rejected with its reason and
its own bytes (and position), the others go on. How a message is read:

* it parses as JSON: an object is one event; an array is a batch, one event per element
  (an empty array is rejected as `empty_batch`);
* it does not parse, holds a newline and its first non-empty line parses as a JSON object:
  NDJSON, one event per non-empty line;
* otherwise it is one malformed event (so a broken pretty-printed object is one rejection,
  not one per line).

A batch holds at most `limits.max_batch_events` events and `limits.max_message_bytes`
bytes (else the whole message is `oversized`); a single event keeps `limits.max_event_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from scoring.config import Config
from scoring.events import Event, read_event
from scoring.reasons import EventRejected, Reason


@dataclass(slots=True)
class Unpacked:
    """One event's place in a message: the event, or why it was rejected, and where it sits."""

    event: Event | None
    rejection: EventRejected | None
    index: int | None = None      # position inside a batch; None when the message is one event
    source: Any = None            # inside a batch: the event's NDJSON line (bytes) or array element

    def original(self, message: bytes) -> bytes:
        """The event's own bytes as sent (an array element re-serialised), for the dead-letter topic."""
        if self.index is None:
            return message
        return self.source if isinstance(self.source, bytes) else orjson.dumps(self.source)


def unpack(raw: bytes, config: Config) -> list[Unpacked]:
    """Every event of a message, validated one by one. Never raises EventRejected."""
    if len(raw) > config.limits.max_message_bytes:
        return [_whole(raw, EventRejected(Reason.OVERSIZED, f"{len(raw)} bytes > limit {config.limits.max_message_bytes}"))]
    found = _sources(raw, config)
    if isinstance(found, Unpacked):
        return [found]
    out = []
    for index, source in found:
        try:
            out.append(Unpacked(read_event(source, config), None, index, None if index is None else source))
        except EventRejected as rejected:
            out.append(_whole(raw, rejected) if index is None else Unpacked(None, rejected, index, source))
    return out


def _sources(raw: bytes, config: Config) -> list[tuple[int | None, Any]] | Unpacked:
    """(position in a batch or None, what to read an event from) of each event of the message, or
    the message's rejection as a whole. A single event that is not JSON is read (and refused) as bytes."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        lines = _ndjson_lines(raw)
        return [(None, raw)] if lines is None else _batch(config, lines, raw)
    if isinstance(obj, list):
        return _batch(config, obj, raw)
    if len(raw) > config.limits.max_event_bytes:
        return _whole(raw, EventRejected(Reason.OVERSIZED, f"{len(raw)} bytes > limit {config.limits.max_event_bytes}"))
    return [(None, obj)]


def _whole(raw: bytes, rejection: EventRejected) -> Unpacked:
    return Unpacked(None, rejection)


def _ndjson_lines(raw: bytes) -> list[bytes] | None:
    if b"\n" not in raw:
        return None
    lines = [line.removesuffix(b"\r") for line in raw.split(b"\n") if line.strip()]
    try:
        first = orjson.loads(lines[0]) if lines else None
    except orjson.JSONDecodeError:
        return None
    return lines if isinstance(first, dict) else None


def _batch(config: Config, items: list[Any], raw: bytes) -> list[tuple[int | None, Any]] | Unpacked:
    """A batch's events (NDJSON lines as bytes, array elements as decoded), or its rejection as a whole."""
    if not items:
        return _whole(raw, EventRejected(Reason.EMPTY_BATCH, "a batch message holds no events"))
    if len(items) > config.limits.max_batch_events:
        return _whole(raw, EventRejected(
            Reason.OVERSIZED, f"{len(items)} events in one message > limit {config.limits.max_batch_events}"))
    return list(enumerate(items))


def pack(values: list[bytes], shape: str) -> bytes:
    """Single-event messages -> one batch message (`array` or `ndjson`); each value is one JSON text."""
    if shape == "ndjson":
        return b"\n".join(values) + b"\n"
    if shape == "array":
        return b"[" + b",".join(values) + b"]"
    raise ValueError(f"unknown batch shape {shape!r} (array or ndjson)")
