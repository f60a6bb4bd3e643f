"""The event model and its validation (docs/events.md).

`decode_event` turns raw message bytes into an :class:`Event` or raises
:class:`~scoring.reasons.EventRejected` with a stable reason. It checks only what the
event says about itself; whether its time is acceptable *now* depends on the
customer's state and the clock, and is checked by :mod:`scoring.windows`.
Unknown extra fields are ignored so producers can add fields before we read them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from scoring.catalogue import BUILTIN_TYPES, CUSTOM_RULE, MEMBERSHIP_TYPES, SENTIMENTS, TypeRule
from scoring.config import Config
from scoring.reasons import EventRejected, Reason
from scoring.segment_spec import is_segment_message, translate
from scoring.timeutil import MAX_EPOCH_MS, parse_rfc3339
from scoring.traits import Traits, read_traits

# Value sums are kept as integers in thousandths so that adding them is exact and
# independent of order (float addition is not associative).
VALUE_SCALE = 1000


@dataclass(slots=True)
class Event:
    event_id: str
    customer_id: str
    type: str
    ts_ms: int
    account_id: str | None = None
    count: int = 1
    value_milli: int | None = None   # `value` x 1000, rounded half to even
    session_id: str | None = None
    feature: str | None = None
    segment: str | None = None
    sentiment: str | None = None
    first_contact: bool | None = None
    channel: str | None = None       # where the interaction happened (web, app, phone ...)
    device: str | None = None        # a scan's device type
    location: str | None = None      # a scan's place (an event, a store)
    traits: Traits | None = None     # the allowed traits it sets (scoring.traits)
    imported: tuple[str, int] | None = None   # (import id, row) of an event imported as history (scoring.history_import)

    @property
    def value(self) -> float | None:
        return None if self.value_milli is None else self.value_milli / VALUE_SCALE

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-ready form (ts as epoch ms); decodes back to an equal Event."""
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "type": self.type,
            "ts": self.ts_ms,
        }
        if self.count != 1:
            out["count"] = self.count
        if self.value_milli is not None:
            out["value"] = self.value
        for name in ("account_id", "session_id", "feature", "segment", "sentiment", "first_contact", "channel",
                     "device", "location"):
            field_value = getattr(self, name)
            if field_value is not None:
                out[name] = field_value
        if self.traits is not None:
            out["traits"] = dict(self.traits)
        if self.imported is not None:
            out["import"] = {"id": self.imported[0], "row": self.imported[1]}
        return out


def decode_event(raw: bytes, config: Config) -> Event:
    """Raw message bytes -> Event, or EventRejected."""
    if len(raw) > config.limits.max_event_bytes:
        raise EventRejected(Reason.OVERSIZED, f"{len(raw)} bytes > limit {config.limits.max_event_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EventRejected(Reason.INVALID_ENCODING, "message is not valid UTF-8") from None
        raise EventRejected(Reason.MALFORMED_JSON, str(exc)) from None
    return validate_event(obj, config)


def read_event(value: bytes | Any, config: Config) -> Event:
    """One event of a message: bytes (an NDJSON line, a whole message) are decoded first, any other
    value (an array element) is validated as it is. EventRejected when it is no event."""
    return decode_event(value, config) if isinstance(value, bytes) else validate_event(value, config)


def validate_event(obj: Any, config: Config) -> Event:
    """An already-decoded JSON value -> Event, or EventRejected. A Segment-spec message is read
    through the config's [mapping] (`scoring.segment_spec`), its rejections naming its own fields."""
    if not isinstance(obj, dict):
        raise EventRejected(Reason.NOT_AN_OBJECT, f"expected a JSON object, got {_json_type(obj)}")
    if is_segment_message(obj):
        event, sources = translate(obj, config.mapping)
        try:
            return _validated(event, config)
        except EventRejected as rejected:
            source = sources.get(rejected.field or "", rejected.field)
            detail = rejected.detail if source == rejected.field else f"{rejected.detail} (read from {source})"
            raise EventRejected(rejected.reason, detail, source) from None
    return _validated(obj, config)


def _validated(obj: dict[str, Any], config: Config) -> Event:
    limit = config.limits.max_id_length
    event_id = _identifier(obj, "event_id", limit, required=True)
    customer_id = _identifier(obj, "customer_id", limit, required=True, allow_int=True)
    type_name = _required(obj, "type")
    if not isinstance(type_name, str):
        raise EventRejected(Reason.INVALID_FIELD, "type must be a string", "type")
    if type_name not in config.known_types:
        shown = type_name if len(type_name) <= 64 else type_name[:64] + "..."
        raise EventRejected(Reason.UNKNOWN_TYPE, f"unknown event type {shown!r}", "type")
    rule = BUILTIN_TYPES.get(type_name, CUSTOM_RULE)
    ts_ms = _timestamp(_required(obj, "ts"))
    count = _count(obj.get("count"), config.limits.max_count)
    value_milli = _value(obj.get("value"), type_name, rule, config.limits.max_value)

    session_id = _identifier(obj, "session_id", limit, required=rule.session_required)
    feature = _identifier(obj, "feature", limit, required=rule.feature_required)
    sentiment = obj.get("sentiment")
    if sentiment is None:
        if rule.sentiment_required:
            raise EventRejected(Reason.MISSING_FIELD, f"sentiment is required for {type_name}", "sentiment")
    elif sentiment not in SENTIMENTS:
        raise EventRejected(Reason.INVALID_FIELD, f"sentiment must be one of {', '.join(SENTIMENTS)}", "sentiment")
    raw_traits = obj.get("traits")      # most events carry none: no call then (the per-event path)
    traits = None if raw_traits is None else read_traits(raw_traits, config.traits, config.limits.max_value,
                                                         lambda v: id_problem(v, limit))
    if traits is None and rule.traits_required:
        raise EventRejected(Reason.MISSING_FIELD, f"traits is required for {type_name}", "traits")
    first_contact = obj.get("first_contact")
    if first_contact is None:
        if rule.first_contact_required:
            raise EventRejected(Reason.MISSING_FIELD, f"first_contact is required for {type_name}", "first_contact")
    elif not isinstance(first_contact, bool):
        raise EventRejected(Reason.INVALID_FIELD, "first_contact must be true or false", "first_contact")

    return Event(
        event_id=event_id,
        customer_id=customer_id,
        type=type_name,
        ts_ms=ts_ms,
        account_id=_identifier(obj, "account_id", limit, required=False, allow_int=True),
        count=count,
        value_milli=value_milli,
        session_id=session_id,
        feature=feature,
        segment=_identifier(obj, "segment", limit, required=False),
        sentiment=sentiment,
        first_contact=first_contact,
        channel=_identifier(obj, "channel", limit, required=False),
        device=_identifier(obj, "device", limit, required=False),
        location=_identifier(obj, "location", limit, required=False),
        traits=traits,
        imported=None if obj.get("import") is None else _imported(obj["import"], type_name, limit),
    )


def _imported(raw: Any, type_name: str, limit: int) -> tuple[str, int] | None:
    """`import`: {"id": the import's id, "row": its row} on an event imported as history."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("row"), int) or isinstance(raw.get("row"), bool) \
            or raw["row"] < 0:
        raise EventRejected(Reason.INVALID_FIELD, 'import must be {"id": string, "row": integer >= 0}', "import")
    import_id = raw.get("id")
    problem = id_problem(import_id, limit) if isinstance(import_id, str) else "must be a string"
    if problem:
        raise EventRejected(Reason.INVALID_FIELD, f"import.id {problem}", "import.id")
    if type_name in MEMBERSHIP_TYPES:
        raise EventRejected(Reason.NOT_IMPORTABLE, f"{type_name} cannot be imported as history: a membership "
                                                   "change alters every KPI of its time", "type")
    return import_id, raw["row"]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}.get(type(value), "value")


def _required(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name)
    if value is None:
        raise EventRejected(Reason.MISSING_FIELD, f"{name} is required", name)
    return value


def _identifier(obj: dict[str, Any], name: str, limit: int, required: bool, allow_int: bool = False) -> str | None:
    """Ids become Redis keys inside `{...}` hash tags, so braces and control characters are refused."""
    value = obj.get(name)
    if value is None:
        if required:
            raise EventRejected(Reason.MISSING_FIELD, f"{name} is required", name)
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise EventRejected(Reason.INVALID_FIELD, f"{name} must be a non-empty string or a non-negative integer", name)
        value = str(value)
    if not isinstance(value, str):
        raise EventRejected(Reason.INVALID_FIELD, f"{name} must be a string, got {_json_type(value)}", name)
    problem = id_problem(value, limit)
    if problem is not None:
        raise EventRejected(Reason.INVALID_FIELD, f"{name} {problem}", name)
    return value


def id_problem(value: str, limit: int) -> str | None:
    """What is wrong with an id (None: nothing). The one rule for ids, at ingest and in API paths."""
    if not value:
        return "must not be empty"
    if len(value) > limit:
        return f"longer than {limit} characters"
    if not value.isprintable() or "{" in value or "}" in value or value != value.strip():
        return "must be printable, without braces or surrounding whitespace"
    return None


def _timestamp(value: Any) -> int:
    if isinstance(value, bool):
        raise EventRejected(Reason.INVALID_TIMESTAMP, "ts must be an RFC 3339 string or epoch milliseconds", "ts")
    if isinstance(value, int):
        if not 0 <= value <= MAX_EPOCH_MS:
            raise EventRejected(Reason.INVALID_TIMESTAMP, "ts epoch milliseconds out of range", "ts")
        return value
    if isinstance(value, str):
        try:
            ts_ms = parse_rfc3339(value)
        except (ValueError, OverflowError):
            raise EventRejected(
                Reason.INVALID_TIMESTAMP, "ts must be RFC 3339 with an offset, e.g. 2026-11-23T12:00:00Z", "ts"
            ) from None
        if not 0 <= ts_ms <= MAX_EPOCH_MS:
            raise EventRejected(Reason.INVALID_TIMESTAMP, "ts outside 1970-01-01 .. 9999-12-31", "ts")
        return ts_ms
    raise EventRejected(Reason.INVALID_TIMESTAMP, "ts must be an RFC 3339 string or integer epoch milliseconds", "ts")


def _count(value: Any, limit: int) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventRejected(Reason.INVALID_FIELD, "count must be an integer", "count")
    if not 1 <= value <= limit:
        raise EventRejected(Reason.OUT_OF_RANGE, f"count must be within 1..{limit}", "count")
    return value


def _value(value: Any, type_name: str, rule: TypeRule, limit: float) -> int | None:
    if value is None:
        if rule.value_required:
            raise EventRejected(Reason.MISSING_FIELD, f"value is required for {type_name}", "value")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventRejected(Reason.INVALID_FIELD, f"value must be a number, got {_json_type(value)}", "value")
    if not math.isfinite(value) or abs(value) > limit:
        raise EventRejected(Reason.OUT_OF_RANGE, f"value must be finite and within +-{limit:g}", "value")
    if rule.value_integer and value != int(value):
        raise EventRejected(Reason.OUT_OF_RANGE, f"value for {type_name} must be a whole number", "value")
    if (rule.value_min is not None and value < rule.value_min) or (rule.value_max is not None and value > rule.value_max):
        low = "" if rule.value_min is None else f"{rule.value_min:g}"
        high = "" if rule.value_max is None else f"{rule.value_max:g}"
        raise EventRejected(Reason.OUT_OF_RANGE, f"value for {type_name} must be within {low}..{high}", "value")
    return round(value * VALUE_SCALE)
