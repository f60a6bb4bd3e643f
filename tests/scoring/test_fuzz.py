"""Fuzzing the decoder and validator: whatever the bytes, no exception escapes, every event
is accepted or rejected with a stable reason, and the scorer keeps going.

Two layers:
* a seeded mutation fuzzer over >= 100,000 inputs (random bytes, truncations, nesting,
  wrong types, huge numbers, NaN/Infinity, unicode edge cases, batches, 1 MB payloads);
* a Hypothesis property over structured JSON values.

Longer runs (documented in docs/development.md): ENGAGE_FUZZ_INPUTS=2000000 and
ENGAGE_FUZZ_EXAMPLES=50000 with `pytest tests/scoring/test_fuzz.py`.
"""

from __future__ import annotations

import json
import os
import random

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from scoring.engine import Outcome, Scorer
from scoring.messages import unpack
from scoring.reasons import Reason
from tests.builders import CONFIG, DAY0, NOW, ev

INPUTS = int(os.environ.get("ENGAGE_FUZZ_INPUTS", "100000"))
EXAMPLES = int(os.environ.get("ENGAGE_FUZZ_EXAMPLES", "1500"))

WEIRD_VALUES = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324, 0.1, "", " ", "0", "1e3",
    "NaN", "Infinity", "\u0000", "\ud800", "\udfff", "\U0001f600", "é", "e\u0301", "\u202e", "\ufeff", "a" * 5000,
    [], {}, [[[]]], {"a": {"b": {"c": {}}}}, "2026-02-30T00:00:00Z", "2026-11-23T12:00:00", "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+00:00", 1_795_435_200_000, -1_795_435_200_000, "１２３",
]
FIELDS = ["event_id", "customer_id", "type", "ts", "account_id", "count", "value", "session_id", "feature",
          "segment", "sentiment", "first_contact", "source"]
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e99999", b"-0", b"00", b"0x10", b"\xff\xfe", b"\xc0\xaf",
              b"\xed\xa0\x80", b"\"\\ud800\"", b"\"\\u0000\"", b"[" * 600 + b"]" * 600, b"{\"a\":" * 300]


def mutate(rng: random.Random, base: bytes) -> bytes:
    choice = rng.randrange(10)
    if choice == 0:
        return base[: rng.randrange(len(base) + 1)]                       # truncated
    if choice == 1:
        i = rng.randrange(len(base) + 1)
        return base[:i] + bytes([rng.randrange(256)]) + base[i:]          # one random byte inserted
    if choice == 2:
        data = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)           # bytes flipped
        return bytes(data)
    if choice == 3:
        return rng.randbytes(rng.randrange(0, 300))                       # random bytes
    if choice == 4:
        i = rng.randrange(len(base) + 1)
        return base[:i] + rng.choice(RAW_TOKENS) + base[i:]               # raw JSON oddities spliced in
    if choice == 5:
        return b"[" + b",".join([base] * rng.randrange(0, 5)) + b"]"      # batch of it (maybe empty)
    if choice == 6:
        return b"\n".join([base, mutate(rng, base), base])                # NDJSON with a bad line
    if choice == 7:
        return b'{"nested": ' * rng.randrange(1, 2000) + base             # deep, unterminated nesting
    if choice == 8:
        return base.replace(b"}", b',"pad":"' + b"x" * rng.randrange(60_000, 1_100_000) + b'"}')  # big payloads
    return base.replace(b'"like"', rng.choice([b'"LIKE"', b'"like "', b"1", b"null", b'"\\u006cike"']))


def weird_event(rng: random.Random) -> bytes:
    event = ev("c1", "like", DAY0, event_id=f"e{rng.randrange(10**6)}")
    for _ in range(rng.randrange(1, 4)):
        event[rng.choice(FIELDS)] = rng.choice(WEIRD_VALUES)
    if rng.random() < 0.2:
        event.pop(rng.choice(list(event)), None)
    raw = dumps(event, ascii_only=rng.random() < 0.5)
    return raw if rng.random() < 0.7 else raw.replace(b'"ts":', rng.choice([b'"ts":NaN,"x":', b'"ts":1e999,"x":']))


def dumps(value: object, ascii_only: bool = True) -> bytes:
    """Any JSON-ish value as bytes: big ints, NaN and lone surrogates included (the latter as
    escapes, or as raw surrogate bytes, which are not valid UTF-8)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def check(raw: bytes, scorer: Scorer) -> list:
    items = unpack(raw, CONFIG)                        # must never raise
    assert items, raw[:100]
    for item in items:
        assert (item.event is None) != (item.rejection is None)
        if item.rejection is not None:
            assert isinstance(item.rejection.reason, Reason) and item.rejection.detail
            assert isinstance(item.original(raw), bytes)
    results = scorer.process_message(raw, NOW)         # and neither must the scorer
    assert len(results) == len(items)
    assert all(r.outcome is not Outcome.REJECTED or isinstance(r.reason, Reason) for r in results)
    return results


def test_a_hundred_thousand_mutated_inputs_are_each_accepted_or_rejected_with_a_reason():
    rng = random.Random(20261123)
    scorer = Scorer(CONFIG, evaluate_alerts=False)
    seeds = [orjson.dumps(ev("c1", t, DAY0 + i, event_id=f"s{i}", **extra)) for i, (t, extra) in enumerate([
        ("like", {}), ("purchase", {"value": 19.99}), ("nps_response", {"value": 9}),
        ("session_start", {"session_id": "s1"}), ("review", {"sentiment": "positive"}),
        ("feature_used", {"feature": "export"}), ("ticket_resolved", {"first_contact": True}),
    ])]
    reasons = set()
    accepted = 0
    big = 0
    for n in range(INPUTS):
        raw = weird_event(rng) if n % 3 == 0 else mutate(rng, rng.choice(seeds))
        big += len(raw) >= 1_000_000
        for result in check(raw, scorer):
            if result.outcome is Outcome.REJECTED:
                reasons.add(result.reason)
            else:
                accepted += 1
    assert big > 0                                     # megabyte payloads were really tried
    assert accepted > 0                                # and good events still got through
    assert len(reasons) >= 9, reasons                  # the inputs reached most rejection paths


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=400),
    json_values.map(dumps),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8).map(dumps),
    st.lists(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6), max_size=5).map(
        lambda items: b"\n".join(dumps(i, ascii_only=False) for i in items)),
))
def test_any_json_or_bytes_is_accepted_or_rejected_never_raised(raw):
    check(raw, Scorer(CONFIG, evaluate_alerts=False))
