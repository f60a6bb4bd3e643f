"""Event validation (docs/events.md): decode_event / validate_event and the time gates.

Expected values (epoch ms, thousandths, reasons) are written out by hand or computed
with the standard library (calendar.timegm), never with the code under test.
"""

from __future__ import annotations

import calendar
import math

import orjson
import pytest

from scoring.catalogue import BUILTIN_TYPES
from scoring.config import load_config
from scoring.engine import Outcome, Scorer, gate
from scoring.events import Event, decode_event, validate_event
from scoring.reasons import EventRejected, Reason
from scoring.state import CustomerState
from tests.builders import CONFIG

CUSTOM = load_config(overrides={"weights": {"webinar_attended": 4}, "targets": {"webinar_attended": 2}})

T = 1_795_435_200_000  # 2026-11-23T12:00:00Z
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def utc_ms(year, month, day, hour=0, minute=0, second=0, millis=0) -> int:
    """Epoch ms of a UTC wall-clock time, via the standard library only."""
    return calendar.timegm((year, month, day, hour, minute, second)) * 1000 + millis


# The 34 built-in types of docs/events.md, listed by hand, with the fields each one requires
# beyond event_id / customer_id / type / ts.
SPEC_TYPES: dict[str, dict] = {
    "member_joined": {}, "member_left": {}, "points_earned": {}, "points_redeemed": {},
    "follow": {}, "like": {}, "comment": {}, "share": {}, "mention": {}, "tag": {}, "reach_out": {},
    "session_start": {"session_id": "s1"},
    "page_view": {},
    "action": {},
    "session_end": {"session_id": "s1", "value": 120},
    "feature_used": {"feature": "search"},
    "email_delivered": {}, "email_open": {}, "email_click": {}, "ad_impression": {}, "ad_click": {}, "conversion": {},
    "purchase": {"value": 19.99},
    "nps_response": {"value": 9},
    "csat_response": {"value": 4},
    "ces_response": {"value": 2},
    "review": {"sentiment": "positive"},
    "social_mention": {"sentiment": "negative"},
    "ticket_opened": {},
    "ticket_resolved": {"first_contact": True},
    # metrics #13, #27 (docs/scores-and-kpis.md): device, location and channel are optional
    "brand_search": {},
    "competitor_search": {},
    "scan": {},
    "traits": {"traits": {"plan": "pro"}},
}

PER_TYPE_REQUIRED = [(type_name, field) for type_name, extra in SPEC_TYPES.items() for field in extra]


def base(type_name: str = "like", **fields) -> dict:
    event = {"event_id": "e-1", "customer_id": "c-1", "type": type_name, "ts": T, **SPEC_TYPES.get(type_name, {})}
    event.update(fields)
    return event


def raw(obj) -> bytes:
    return orjson.dumps(obj)


def rejected(message, config=CONFIG) -> EventRejected:
    """Decode (bytes) or validate (anything else) and return the rejection."""
    with pytest.raises(EventRejected) as info:
        if isinstance(message, bytes):
            decode_event(message, config)
        else:
            validate_event(message, config)
    return info.value


def without(obj: dict, field: str) -> dict:
    return {k: v for k, v in obj.items() if k != field}


# --- every built-in type -----------------------------------------------------------------


def test_catalogue_matches_the_documented_type_list():
    assert set(BUILTIN_TYPES) == set(SPEC_TYPES)
    assert len(SPEC_TYPES) == 34


@pytest.mark.parametrize("type_name", sorted(BUILTIN_TYPES))
def test_minimal_valid_event_of_every_builtin_type_decodes(type_name):
    event = decode_event(raw(base(type_name)), CONFIG)
    assert (event.event_id, event.customer_id, event.type, event.ts_ms, event.count) == ("e-1", "c-1", type_name, T, 1)
    assert event.account_id is None and event.segment is None
    extra = SPEC_TYPES[type_name]
    assert event.session_id == extra.get("session_id")
    assert event.feature == extra.get("feature")
    assert event.sentiment == extra.get("sentiment")
    assert event.first_contact == extra.get("first_contact")


@pytest.mark.parametrize("type_name", sorted(BUILTIN_TYPES))
def test_every_builtin_type_round_trips_through_to_dict(type_name):
    value = {"nps_response": 10, "csat_response": 5, "ces_response": 7}.get(type_name, 19.99)
    full = base(
        type_name,
        event_id="evt-42",
        customer_id=1234,
        account_id="acme",
        ts="2026-11-23T17:30:00.123456+05:30",
        count=3,
        value=value,
        session_id="sess-9",
        feature="search",
        segment="smb",
        sentiment="neutral",
        first_contact=False,
    )
    event = decode_event(raw(full), CONFIG)
    assert event.customer_id == "1234"
    assert event.ts_ms == utc_ms(2026, 11, 23, 12, 0, 0, 123)
    assert event.count == 3
    assert event.value_milli == (19_990 if value == 19.99 else value * 1000)
    assert (event.account_id, event.session_id, event.feature, event.segment) == ("acme", "sess-9", "search", "smb")
    assert (event.sentiment, event.first_contact) == ("neutral", False)
    again = decode_event(orjson.dumps(event.to_dict()), CONFIG)
    assert again == event


@pytest.mark.parametrize("type_name", sorted(BUILTIN_TYPES))
def test_minimal_event_round_trips(type_name):
    event = decode_event(raw(base(type_name)), CONFIG)
    assert decode_event(orjson.dumps(event.to_dict()), CONFIG) == event


def test_validate_event_equals_decode_event():
    obj = base("purchase", account_id=7, count=2)
    assert validate_event(obj, CONFIG) == decode_event(raw(obj), CONFIG)


# --- custom types -------------------------------------------------------------------------


def test_custom_type_with_a_configured_weight_is_accepted():
    event = decode_event(raw(base("webinar_attended", count=2, value=45)), CUSTOM)
    assert (event.type, event.count, event.value_milli) == ("webinar_attended", 2, 45_000)
    assert decode_event(orjson.dumps(event.to_dict()), CUSTOM) == event


def test_custom_type_needs_nothing_beyond_the_common_fields():
    event = decode_event(raw(base("webinar_attended")), CUSTOM)
    assert event.value_milli is None and event.count == 1


def test_custom_type_value_must_not_be_negative():
    exc = rejected(base("webinar_attended", value=-1), CUSTOM)
    assert (exc.reason, exc.field) == (Reason.OUT_OF_RANGE, "value")


def test_custom_type_is_unknown_without_config():
    exc = rejected(raw(base("webinar_attended")))
    assert (exc.reason, exc.field) == (Reason.UNKNOWN_TYPE, "type")


@pytest.mark.parametrize("type_name", ["Like", "LIKE", "likes", "", " like", "webinar_attended", "x" * 500])
def test_unknown_types(type_name):
    exc = rejected(base(type_name))
    assert (exc.reason, exc.field) == (Reason.UNKNOWN_TYPE, "type")


# --- raw-message level: size, encoding, JSON, object -------------------------------------


def _padded(total: int) -> bytes:
    """A valid event padded with an ignored field to exactly `total` bytes."""
    head = raw(base("like", pad=""))
    message = raw(base("like", pad="x" * (total - len(head))))
    assert len(message) == total
    return message


def test_oversized_boundary_default_limit_is_64_kib():
    assert decode_event(_padded(65_536), CONFIG).type == "like"
    exc = rejected(_padded(65_537))
    assert exc.reason is Reason.OVERSIZED


def test_oversized_uses_configured_limit():
    small = load_config(overrides={"limits": {"max_event_bytes": 1024}})
    assert decode_event(_padded(1024), small).type == "like"
    assert rejected(_padded(1025), small).reason is Reason.OVERSIZED


def test_oversized_is_checked_before_parsing():
    assert rejected(b"\xff" * 70_000).reason is Reason.OVERSIZED
    assert rejected(b"{" * 70_000).reason is Reason.OVERSIZED


@pytest.mark.parametrize(
    "message",
    [
        b'{"event_id": "\xff\xfe", "customer_id": "c", "type": "like", "ts": 1}',
        '{"event_id": "caf\u00e9", "customer_id": "c", "type": "like", "ts": 1}'.encode("latin-1"),
        b'{"event_id": "caf\xc3"}',                                   # truncated multi-byte sequence
        '{"event_id": "e", "customer_id": "c", "type": "like", "ts": 1}'.encode("utf-16"),
        b'{"event_id": "\xed\xa0\x80"}',                               # UTF-8-encoded surrogate
    ],
    ids=["ff-fe", "latin-1", "truncated", "utf-16", "surrogate"],
)
def test_invalid_encoding(message):
    assert rejected(message).reason is Reason.INVALID_ENCODING


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"   ",
        b"{",
        b'{"event_id": "e-1", "customer_id": "c-1", "type": "like", "ts": 17954352',   # truncated
        b'{"event_id": "e-1", "customer_id": "c-1",',
        b"{'event_id': 'e-1'}",
        b'{"event_id": "e-1",}',
        b'{"event_id": "e-1"} {}',
        b'{"event_id": "e-1", "customer_id": "c-1", "type": "purchase", "ts": 1, "value": NaN}',
        b'{"event_id": "e-1", "customer_id": "c-1", "type": "purchase", "ts": 1, "value": Infinity}',
        b'{"event_id": "e-1", "customer_id": "c-1", "type": "purchase", "ts": 1, "value": -Infinity}',
        b'{"event_id": "e-1", "customer_id": "c-1", "type": "purchase", "ts": 1, "value": 1e400}',
        b'{"event_id": "e-1", "customer_id": "c-1", "type": "like", "ts": 1, "count": -1e999}',
        b"NaN",
        b'\xef\xbb\xbf{"event_id": "e-1"}',                         # UTF-8 byte order mark
        b'{"event_id": "\\ud800"}',                                  # lone surrogate escape
        b'{"x": ' + b"[" * 2000 + b"]" * 2000 + b"}",                # nesting depth
        b'{"event_id": "e\x01"}',                                    # raw control character in a string
    ],
)
def test_malformed_json(message):
    assert rejected(message).reason is Reason.MALFORMED_JSON


@pytest.mark.parametrize("message", [b"[]", b"[" + raw(base()) + b"]", b'"like"', b"42", b"-1.5", b"null", b"true"])
def test_not_an_object(message):
    assert rejected(message).reason is Reason.NOT_AN_OBJECT


@pytest.mark.parametrize("obj", [[], "x", 1, 2.5, None, True, [base()]])
def test_validate_event_needs_an_object(obj):
    assert rejected(obj).reason is Reason.NOT_AN_OBJECT


# --- missing and invalid fields ------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "customer_id", "type", "ts"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_common_field(field, how):
    obj = without(base(), field) if how == "absent" else base(**{field: None})
    exc = rejected(raw(obj))
    assert (exc.reason, exc.field) == (Reason.MISSING_FIELD, field)


@pytest.mark.parametrize(("type_name", "field"), PER_TYPE_REQUIRED)
def test_missing_per_type_field(type_name, field):
    exc = rejected(raw(without(base(type_name), field)))
    assert (exc.reason, exc.field) == (Reason.MISSING_FIELD, field)
    exc = rejected(raw(base(type_name, **{field: None})))
    assert (exc.reason, exc.field) == (Reason.MISSING_FIELD, field)


def test_optional_fields_may_be_absent_or_null():
    event = decode_event(raw(base("like", account_id=None, count=None, value=None, segment=None)), CONFIG)
    assert (event.account_id, event.count, event.value_milli, event.segment) == (None, 1, None, None)


ID_FIELDS = ["event_id", "customer_id", "account_id", "session_id", "feature", "segment"]
BAD_IDS = ["", " c", "c ", "\tc", "c\n", "a{b", "a}b", "{c}", "a\x00b", "a\x1fb", "a\x7fb", "a\u2028b", "x" * 129]


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_identifiers(field, bad):
    exc = rejected(raw(base("like", **{field: bad})))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("field", ID_FIELDS)
def test_identifier_limits_and_unicode(field):
    assert getattr(decode_event(raw(base("like", **{field: "x" * 128})), CONFIG), field) == "x" * 128
    assert getattr(decode_event(raw(base("like", **{field: "café-ü.1"})), CONFIG), field) == "café-ü.1"
    short = load_config(overrides={"limits": {"max_id_length": 8}})
    assert getattr(decode_event(raw(base("like", **{field: "12345678"})), short), field) == "12345678"
    exc = rejected(raw(base("like", **{field: "123456789"})), short)
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("bad", [["c"], {"id": "c"}, 1.5, True, False], ids=repr)
def test_identifiers_of_wrong_json_type(field, bad):
    exc = rejected(raw(base("like", **{field: bad})))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("field", ["event_id", "session_id", "feature", "segment"])
def test_only_customer_and_account_ids_may_be_integers(field):
    exc = rejected(raw(base("like", **{field: 5})))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("field", ["customer_id", "account_id"])
@pytest.mark.parametrize(("number", "text"), [(0, "0"), (42, "42"), (9_007_199_254_740_993, "9007199254740993")])
def test_integer_customer_and_account_ids_become_decimal_strings(field, number, text):
    event = decode_event(raw(base("like", **{field: number})), CONFIG)
    assert getattr(event, field) == text
    # the string and the integer name the same customer / account
    assert event == decode_event(raw(base("like", **{field: text})), CONFIG)


@pytest.mark.parametrize("field", ["customer_id", "account_id"])
def test_negative_integer_ids_are_invalid(field):
    exc = rejected(raw(base("like", **{field: -1})))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("bad", [5, ["like"], {"name": "like"}, True])
def test_type_must_be_a_string(bad):
    exc = rejected(raw(base("like", type=bad)))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, "type")


@pytest.mark.parametrize("type_name", ["review", "social_mention", "like"])
@pytest.mark.parametrize("bad", ["Positive", "good", "", "POSITIVE", 1, True, ["positive"]], ids=repr)
def test_bad_sentiment(type_name, bad):
    exc = rejected(raw(base(type_name, sentiment=bad)))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, "sentiment")


@pytest.mark.parametrize("sentiment", ["positive", "neutral", "negative"])
def test_every_sentiment_is_accepted(sentiment):
    assert decode_event(raw(base("review", sentiment=sentiment)), CONFIG).sentiment == sentiment


@pytest.mark.parametrize("bad", ["true", 1, 0, "yes", [True]], ids=repr)
def test_first_contact_must_be_boolean(bad):
    exc = rejected(raw(base("ticket_resolved", first_contact=bad)))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, "first_contact")


@pytest.mark.parametrize("flag", [True, False])
def test_first_contact_true_and_false(flag):
    assert decode_event(raw(base("ticket_resolved", first_contact=flag)), CONFIG).first_contact is flag


@pytest.mark.parametrize("bad", ["3", 2.0, 2.5, True, [2]], ids=repr)
def test_count_of_wrong_type(bad):
    exc = rejected(raw(base("like", count=bad)))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, "count")


@pytest.mark.parametrize("bad", [0, -1, -300, 1_000_001])
def test_count_out_of_range(bad):
    exc = rejected(raw(base("like", count=bad)))
    assert (exc.reason, exc.field) == (Reason.OUT_OF_RANGE, "count")


@pytest.mark.parametrize("count", [1, 300, 1_000_000])
def test_count_in_range(count):
    assert decode_event(raw(base("like", count=count)), CONFIG).count == count


def test_count_limit_is_configurable():
    small = load_config(overrides={"limits": {"max_count": 10}})
    assert decode_event(raw(base("like", count=10)), small).count == 10
    assert rejected(raw(base("like", count=11)), small).reason is Reason.OUT_OF_RANGE


@pytest.mark.parametrize("bad", ["19.99", True, [1], {"amount": 1}], ids=repr)
def test_value_of_wrong_type(bad):
    exc = rejected(raw(base("purchase", value=bad)))
    assert (exc.reason, exc.field) == (Reason.INVALID_FIELD, "value")


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("nps_response", -1), ("nps_response", 11), ("nps_response", 8.5), ("nps_response", 9.999),
        ("csat_response", 0), ("csat_response", 6), ("csat_response", 4.5),
        ("ces_response", 0), ("ces_response", 8), ("ces_response", 1.5),
        ("purchase", -0.01), ("purchase", -100),
        ("points_earned", -5), ("session_end", -1), ("ticket_resolved", -60),
        ("purchase", 1_000_000_000_001), ("purchase", 1e13),
    ],
)
def test_value_out_of_range(type_name, value):
    exc = rejected(raw(base(type_name, value=value)))
    assert (exc.reason, exc.field) == (Reason.OUT_OF_RANGE, "value")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_value_objects_are_out_of_range(value):
    exc = rejected(base("purchase", value=value))
    assert (exc.reason, exc.field) == (Reason.OUT_OF_RANGE, "value")


def test_value_limit_is_configurable():
    small = load_config(overrides={"limits": {"max_value": 100}})
    assert decode_event(raw(base("purchase", value=100)), small).value_milli == 100_000
    exc = rejected(raw(base("purchase", value=100.5)), small)
    assert (exc.reason, exc.field) == (Reason.OUT_OF_RANGE, "value")


@pytest.mark.parametrize(
    ("type_name", "value", "milli"),
    [
        ("nps_response", 0, 0), ("nps_response", 10, 10_000), ("nps_response", 7.0, 7_000),
        ("csat_response", 1, 1_000), ("csat_response", 5, 5_000),
        ("ces_response", 1, 1_000), ("ces_response", 7, 7_000),
        ("purchase", 19.99, 19_990), ("purchase", 0, 0), ("purchase", 0.1, 100), ("purchase", 0.001, 1),
        ("purchase", 49.95, 49_950), ("purchase", 1234.567, 1_234_567),
        ("purchase", 1.005, 1_005), ("purchase", 1.001, 1_001),   # 1.005 * 1000 == 1004.9999999999999 in floats
        ("purchase", 1_000_000_000_000, 1_000_000_000_000_000),
        ("session_end", 120, 120_000), ("points_earned", 250, 250_000),
    ],
)
def test_value_is_kept_as_integer_thousandths(type_name, value, milli):
    event = decode_event(raw(base(type_name, value=value)), CONFIG)
    assert type(event.value_milli) is int
    assert event.value_milli == milli
    assert event.value == milli / 1000


def test_value_sum_in_thousandths_is_exact():
    # 0.1 + 0.2 != 0.3 in floats; in thousandths it is exact.
    parts = [decode_event(raw(base("purchase", value=v)), CONFIG).value_milli for v in (0.1, 0.2)]
    assert sum(parts) == decode_event(raw(base("purchase", value=0.3)), CONFIG).value_milli == 300


def test_unknown_extra_fields_are_ignored():
    plain = decode_event(raw(base("comment")), CONFIG)
    extra = decode_event(
        raw(base("comment", producer="web", meta={"nested": [1, {"a": None}]}, score=None, tags=["x"])), CONFIG
    )
    assert extra == plain


def test_check_order_first_problem_wins():
    # missing event_id is reported before a bad type or timestamp
    exc = rejected(raw({"customer_id": "c", "type": "nope", "ts": "garbage"}))
    assert (exc.reason, exc.field) == (Reason.MISSING_FIELD, "event_id")


def test_rejection_carries_reason_code_in_message():
    exc = rejected(raw(base("like", count=0)))
    assert str(exc).startswith("out_of_range:")
    assert isinstance(exc, ValueError)


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T12:00:00Z", utc_ms(2026, 11, 23, 12)),
        ("2026-11-23T12:00:00z", utc_ms(2026, 11, 23, 12)),
        ("2026-11-23t12:00:00Z", utc_ms(2026, 11, 23, 12)),
        ("2026-11-23T12:00:00+00:00", utc_ms(2026, 11, 23, 12)),
        ("2026-11-23T12:00:00-00:00", utc_ms(2026, 11, 23, 12)),
        ("2026-11-23T17:30:00+05:30", utc_ms(2026, 11, 23, 12)),        # India: 5 h 30 ahead
        ("2026-11-23T04:00:00-08:00", utc_ms(2026, 11, 23, 12)),        # US Pacific: 8 h behind
        ("2026-11-23T12:00:00+05:30", utc_ms(2026, 11, 23, 6, 30)),
        ("2026-12-31T20:00:00-05:00", utc_ms(2027, 1, 1, 1)),           # crosses the year
        ("2026-01-01T03:15:00+05:45", utc_ms(2025, 12, 31, 21, 30)),    # Nepal, back across the year
        ("2028-02-29T00:00:00Z", utc_ms(2028, 2, 29)),                  # leap day
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("2026-11-23T12:00:00.5Z", utc_ms(2026, 11, 23, 12, millis=500)),
        ("2026-11-23T12:00:00.1Z", utc_ms(2026, 11, 23, 12, millis=100)),
        ("2026-11-23T12:00:00.12Z", utc_ms(2026, 11, 23, 12, millis=120)),
        ("2026-11-23T12:00:00.123Z", utc_ms(2026, 11, 23, 12, millis=123)),
        ("2026-11-23T12:00:00.1239Z", utc_ms(2026, 11, 23, 12, millis=123)),      # truncated, not rounded
        ("2026-11-23T12:00:00.999999999Z", utc_ms(2026, 11, 23, 12, millis=999)),
        ("2026-11-23T12:00:00.000001Z", utc_ms(2026, 11, 23, 12)),
        ("2026-11-23T17:30:00.987654+05:30", utc_ms(2026, 11, 23, 12, millis=987)),
        ("9999-12-31T23:59:59.999Z", utc_ms(9999, 12, 31, 23, 59, 59, 999)),
    ],
)
def test_rfc3339_timestamps(text, expected):
    assert decode_event(raw(base(ts=text)), CONFIG).ts_ms == expected


def test_hand_computed_anchor():
    # 2026-11-23 is 20415 days after 1970-01-01: 20415 * 86400 + 12 * 3600 = 1795435200 s
    assert utc_ms(2026, 11, 23, 12) == T
    assert decode_event(raw(base(ts="2026-11-23T12:00:00Z")), CONFIG).ts_ms == 1_795_435_200_000


@pytest.mark.parametrize("ts", [0, 1, T, 253_402_300_799_999])   # up to 9999-12-31T23:59:59.999Z
def test_epoch_ms_integers_are_accepted(ts):
    assert decode_event(raw(base(ts=ts)), CONFIG).ts_ms == ts


def test_epoch_ms_and_rfc3339_give_the_same_event():
    assert decode_event(raw(base(ts=T)), CONFIG) == decode_event(raw(base(ts="2026-11-23T12:00:00Z")), CONFIG)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-23T12:00:00",             # naive: no offset
        "2026-11-23T12:00:00.123",         # naive with fraction
        "2026-11-23",                      # date only
        "12:00:00Z",                       # time only
        "2026-11-23T12:00Z",               # no seconds
        "2026-11-23T12:00:00+0530",        # offset without colon
        "2026-11-23T12:00:00+05",          # hour-only offset
        "2026-11-23T12:00:00 UTC",
        "2026-11-23T12:00:00.Z",           # empty fraction
        "2026-11-23T12:00:00,5Z",          # comma fraction
        "2026-11-23T24:00:00Z",            # hour 24
        "2026-11-23T12:60:00Z",            # minute 60
        "2026-02-30T12:00:00Z",            # no such day
        "2026-13-01T12:00:00Z",            # no such month
        "2026-11-23T12:00:00+24:00",       # offset out of range
        "2026-11-23T12:00:00+05:60",
        "26-11-23T12:00:00Z",              # two-digit year
        "0000-01-01T00:00:00Z",            # year 0
        "1969-12-31T23:59:59Z",            # before the epoch
        "1969-12-31T23:59:59.999Z",
        "0001-01-01T00:00:00+05:00",       # before datetime.min in UTC
        "9999-12-31T23:59:59-05:00",       # after 9999-12-31T23:59:59.999Z in UTC
        "2026-11-23T12:00:00Z\n",          # trailing newline
        " 2026-11-23T12:00:00Z",
        "2026-11-23T12:00:00Z ",
        "\u0662\u0660\u0662\u0666-11-23T12:00:00Z",   # Arabic-Indic digits
        "2026-11-23T12:00:00\uff3a",       # full-width Z
        "1795435200000",                   # epoch ms as a string
        "yesterday",
        "now",
        "",
        "2026-11-23T12:00:00Zgarbage",
    ],
)
def test_invalid_timestamp_strings(ts):
    exc = rejected(raw(base(ts=ts)))
    assert (exc.reason, exc.field) == (Reason.INVALID_TIMESTAMP, "ts")


@pytest.mark.parametrize(
    "ts",
    [True, False, 1.7954352e12, 1795435200000.5, 0.0, -1, -T, 253_402_300_800_000, [T], {"ms": T}],
    ids=repr,
)
def test_invalid_timestamp_values(ts):
    exc = rejected(raw(base(ts=ts)))
    assert (exc.reason, exc.field) == (Reason.INVALID_TIMESTAMP, "ts")


# --- time gates (scoring.engine.gate / Scorer.process) --------------------------------------


def _event(event_id: str, ts: int, customer: str = "c-1") -> Event:
    return decode_event(raw(base("like", event_id=event_id, customer_id=customer, ts=ts)), CONFIG)


def test_gate_future_skew_boundary():
    # default time.max_future_skew = 5m
    assert gate(_event("a", T + 5 * MIN), None, T, CONFIG) is Outcome.ACCEPTED
    with pytest.raises(EventRejected) as info:
        gate(_event("b", T + 5 * MIN + 1), None, T, CONFIG)
    assert (info.value.reason, info.value.field) == (Reason.TS_IN_FUTURE, "ts")


def test_gate_lateness_boundary():
    # default time.allowed_lateness = 1d behind the customer's newest event
    state = CustomerState("c-1", watermark_ms=T)
    assert gate(_event("a", T - DAY), state, T, CONFIG) is Outcome.ACCEPTED
    with pytest.raises(EventRejected) as info:
        gate(_event("b", T - DAY - 1), state, T, CONFIG)
    assert (info.value.reason, info.value.field) == (Reason.TS_TOO_LATE, "ts")


def test_gate_without_state_accepts_any_past_event():
    assert gate(_event("a", T - 365 * DAY), None, T, CONFIG) is Outcome.ACCEPTED


def test_gate_lateness_is_measured_from_the_watermark_not_the_clock():
    state = CustomerState("c-1", watermark_ms=T - 10 * DAY)
    assert gate(_event("a", T - 11 * DAY), state, T, CONFIG) is Outcome.ACCEPTED
    with pytest.raises(EventRejected) as info:
        gate(_event("b", T - 11 * DAY - 1), state, T, CONFIG)
    assert info.value.reason is Reason.TS_TOO_LATE


def test_gate_duplicate_wins_over_time_checks():
    state = CustomerState("c-1", watermark_ms=T, seen={"old": T - 36 * HOUR, "new": T})
    assert gate(_event("old", T - 36 * HOUR), state, T, CONFIG) is Outcome.DUPLICATE      # now too late
    assert gate(_event("new", T + HOUR), state, T, CONFIG) is Outcome.DUPLICATE           # now in the future


def test_gate_uses_configured_limits():
    config = load_config(overrides={"time": {"max_future_skew": "1h", "allowed_lateness": "2h"}})
    state = CustomerState("c-1", watermark_ms=T)
    assert gate(_event("a", T + HOUR), state, T, config) is Outcome.ACCEPTED
    assert gate(_event("b", T - 2 * HOUR), state, T, config) is Outcome.ACCEPTED
    with pytest.raises(EventRejected):
        gate(_event("c", T + HOUR + 1), state, T, config)
    with pytest.raises(EventRejected):
        gate(_event("d", T - 2 * HOUR - 1), state, T, config)


def test_scorer_rejects_future_event_without_touching_state():
    scorer = Scorer(CONFIG, evaluate_alerts=False)
    result = scorer.process(raw(base("like", ts=T + 6 * MIN)), T)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.TS_IN_FUTURE)
    assert "c-1" not in scorer.customers


def test_scorer_too_late_and_duplicate_after_watermark_moved():
    scorer = Scorer(CONFIG, evaluate_alerts=False)
    now = T + 2 * DAY
    assert scorer.process(raw(base("like", event_id="a", ts=T)), now).outcome is Outcome.ACCEPTED
    assert scorer.process(raw(base("like", event_id="b", ts=T + 36 * HOUR)), now).outcome is Outcome.ACCEPTED
    # a new event as old as "a" is now more than 1 d behind the watermark
    late = scorer.process(raw(base("like", event_id="c", ts=T)), now)
    assert (late.outcome, late.reason) == (Outcome.REJECTED, Reason.TS_TOO_LATE)
    # but "a" redelivered is a duplicate, not a rejection, although its ts is now too late
    again = scorer.process(raw(base("like", event_id="a", ts=T)), now)
    assert again.outcome is Outcome.DUPLICATE and again.reason is None
    # a redelivered "b" (still inside lateness) is a duplicate too, and counts once
    assert scorer.process(base("like", event_id="b", ts=T + 36 * HOUR), now).outcome is Outcome.DUPLICATE
    state = scorer.customers["c-1"]
    assert sum(bucket.get("n.like", 0) for bucket in state.buckets.values()) == 2   # a and b, once each
    assert set(state.seen) == {"a", "b"}


def test_redelivery_after_dedup_horizon_is_too_late_never_counted_twice():
    scorer = Scorer(CONFIG, evaluate_alerts=False)
    now = T + 4 * DAY
    assert scorer.process(raw(base("like", event_id="a", ts=T)), now).outcome is Outcome.ACCEPTED
    assert scorer.process(raw(base("like", event_id="b", ts=T + 3 * DAY)), now).outcome is Outcome.ACCEPTED
    # "a" is beyond the 2 d dedup horizon and forgotten, and beyond the 1 d lateness
    assert "a" not in scorer.customers["c-1"].seen
    again = scorer.process(raw(base("like", event_id="a", ts=T)), now)
    assert (again.outcome, again.reason) == (Outcome.REJECTED, Reason.TS_TOO_LATE)


def test_scorer_reports_decode_rejections():
    scorer = Scorer(CONFIG, evaluate_alerts=False)
    result = scorer.process(b"{not json", T)
    assert (result.outcome, result.reason, result.event) == (Outcome.REJECTED, Reason.MALFORMED_JSON, None)
    result = scorer.process(base("like", count=0), T)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, Reason.OUT_OF_RANGE)
    assert scorer.customers == {}


def test_channel_device_and_location_are_optional_identifiers_kept_as_given():
    event = decode_event(raw(base("scan", channel="in_store", device="ios", location="Expo Hall 2")), CONFIG)
    assert (event.channel, event.device, event.location) == ("in_store", "ios", "Expo Hall 2")
    assert decode_event(raw(event.to_dict()), CONFIG) == event
    plain = decode_event(raw(base("scan")), CONFIG)
    assert (plain.channel, plain.device, plain.location) == (None, None, None)


@pytest.mark.parametrize("name", ["channel", "device", "location"])
@pytest.mark.parametrize("bad", [7, "", "{web}", " web"])
def test_a_bad_channel_device_or_location_is_an_invalid_field_named(name, bad):
    with pytest.raises(EventRejected) as info:
        decode_event(raw(base("scan", **{name: bad})), CONFIG)
    assert info.value.reason is Reason.INVALID_FIELD and info.value.field == name
