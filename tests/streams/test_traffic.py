"""The traffic generator: deterministic, realistic mix, isolation prefixes."""

from __future__ import annotations

from collections import Counter

import orjson

from scoring.catalogue import BUILTIN_TYPES
from scoring.events import decode_event
from devstack.traffic import Kind, TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY
from tests.builders import CONFIG, DAY0


def sample(count=5000, **settings):
    return list(TrafficGenerator(TrafficSettings(**settings)).messages(count, DAY0, 30 * DAY))


def test_same_seed_same_stream_other_seed_other_stream():
    assert sample(800, seed=1) == sample(800, seed=1)
    assert sample(800, seed=1) != sample(800, seed=2)


def test_every_builtin_type_appears_and_valid_messages_decode():
    config = CONFIG
    types = Counter()
    for message in sample(20000, customers=300):
        if message.kind in (Kind.VALID, Kind.DELAYED):
            event = decode_event(message.value, config)
            assert message.key == event.customer_id.encode()
            types[event.type] += 1
    assert set(types) == set(BUILTIN_TYPES)


def test_activity_is_skewed_towards_a_few_customers():
    per_customer = Counter(m.key for m in sample(20000, customers=500) if m.kind is Kind.VALID)
    counts = sorted(per_customer.values(), reverse=True)
    top_tenth = sum(counts[: len(counts) // 10])
    assert top_tenth > 0.4 * sum(counts)   # Zipf: the top 10 % of customers make most of the traffic


def test_shares_of_bad_and_repeated_messages_follow_the_settings():
    kinds = Counter(m.kind for m in sample(20000, duplicate_share=0.05, malformed_share=0.02))
    assert 0.04 < kinds[Kind.DUPLICATE] / 20000 < 0.06
    assert 0.015 < kinds[Kind.MALFORMED] / 20000 < 0.025


def test_prefix_isolates_ids():
    for message in sample(500, prefix="run42-"):
        if message.kind is Kind.MALFORMED:
            continue
        event = orjson.loads(message.value)
        assert event["customer_id"].startswith("run42-") and event["event_id"].startswith("run42-")
        assert event["account_id"].startswith("run42-")


def test_event_times_stay_inside_the_span_and_messages_are_small():
    messages = sample(3000)
    assert all(DAY0 <= m.at_ms < DAY0 + 30 * DAY for m in messages)
    valid = [m for m in messages if m.kind is Kind.VALID]
    assert max(len(m.value) for m in valid) < 300
