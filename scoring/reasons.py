"""Stable, machine-readable reasons an event is rejected.

The codes are part of the public contract: they label the
``engagement_events_rejected_total{reason=...}`` counter and travel with every
dead-lettered event, so they never change meaning once released.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    OVERSIZED = "oversized"                  # an event over limits.max_event_bytes, a message over the batch limits
    INVALID_ENCODING = "invalid_encoding"    # bytes are not UTF-8
    MALFORMED_JSON = "malformed_json"        # not parseable JSON (incl. NaN, Infinity, depth)
    NOT_AN_OBJECT = "not_an_object"          # JSON, but not an object
    MISSING_FIELD = "missing_field"          # a required field is absent or null
    INVALID_FIELD = "invalid_field"          # a field has the wrong JSON type or shape
    UNKNOWN_TYPE = "unknown_type"            # `type` is neither built in nor configured
    OUT_OF_RANGE = "out_of_range"            # a number outside its allowed range
    INVALID_TIMESTAMP = "invalid_timestamp"  # `ts` is neither RFC 3339 with offset nor epoch ms
    TS_IN_FUTURE = "ts_in_future"            # `ts` beyond now + time.max_future_skew
    TS_TOO_LATE = "ts_too_late"              # `ts` older than watermark - time.allowed_lateness
    EMPTY_BATCH = "empty_batch"              # a batch message (JSON array) holding no events
    UNMAPPED_EVENT = "unmapped_event"        # a Segment track event whose name [mapping] does not map to a type
    UNSUPPORTED_MESSAGE = "unsupported_message"  # a Segment call that is no event (page, screen, alias)
    NOT_IMPORTABLE = "not_importable"        # an imported event history cannot hold (a membership change)
    TS_BEYOND_RETENTION = "ts_beyond_retention"  # an imported event older than anything a score reads
    PROCESSING_ERROR = "processing_error"    # the worker failed on this message every time it tried (quarantined)


class EventRejected(ValueError):
    """Raised by validation; carries the stable reason and a human-readable detail."""

    def __init__(self, reason: Reason, detail: str, field: str | None = None, subject: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field
        self.subject = subject      # what the reason is about, when a metric counts it (an unmapped event's name)
