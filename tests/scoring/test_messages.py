"""Message framing: one event, a JSON array or NDJSON; each event validated and rejected on its own."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from scoring.config import ConfigError, load_config
from scoring.engine import Outcome, Scorer
from scoring.messages import pack, unpack
from scoring.reasons import Reason
from devstack.traffic import Kind, TrafficGenerator, TrafficSettings, batched
from scoring.timeutil import DAY
from tests.builders import CONFIG, DAY0, NOW, ev



def raw(event: dict) -> bytes:
    return orjson.dumps(event)


def good(i: int, customer: str = "c1") -> bytes:
    return raw(ev(customer, "like", DAY0 + i, event_id=f"e{i}"))


def shape(message: bytes) -> list[tuple]:
    return [(u.index, u.event.event_id if u.event else None, u.rejection.reason.value if u.rejection else None,
             u.original(message)) for u in unpack(message, CONFIG)]


def test_a_single_object_is_one_event_without_an_index():
    assert shape(good(1)) == [(None, "e1", None, good(1))]
    assert shape(good(1) + b"\n") == [(None, "e1", None, good(1) + b"\n")]   # trailing newline: still one


def test_an_array_is_validated_element_by_element_and_a_bad_one_keeps_its_own_bytes():
    message = pack([good(1), b'{"x":1}', good(3), b"7"], "array")
    assert shape(message) == [
        (0, "e1", None, good(1)), (1, None, "missing_field", b'{"x":1}'), (2, "e3", None, good(3)),
        (3, None, "not_an_object", b"7")]


def test_ndjson_is_validated_line_by_line_and_blank_lines_are_ignored():
    message = b"\n".join([good(1), b"", b"garbage", good(3), b'{"type": 5}']) + b"\r\n"
    assert shape(message) == [
        (0, "e1", None, good(1)), (1, None, "malformed_json", b"garbage"), (2, "e3", None, good(3)),
        (3, None, "missing_field", b'{"type": 5}')]


def test_a_broken_multi_line_object_is_one_malformed_event_not_one_per_line():
    message = b'{"event_id": "e1",\n "customer_id": \n'
    assert shape(message) == [(None, None, "malformed_json", message)]


def test_an_empty_array_is_an_empty_batch():
    assert shape(b"[]") == [(None, None, "empty_batch", b"[]")]
    assert shape(b" [ ] ") == [(None, None, "empty_batch", b" [ ] ")]


def test_batch_limits_reject_the_whole_message_as_oversized():
    small = load_config(overrides={"limits": {"max_batch_events": 3, "max_event_bytes": 256,
                                              "max_message_bytes": 1024}})
    three, four = pack([good(i) for i in range(3)], "array"), pack([good(i) for i in range(4)], "ndjson")
    assert [u.event.event_id for u in unpack(three, small)] == ["e0", "e1", "e2"]
    [whole] = unpack(four, small)
    assert (whole.rejection.reason, whole.index, whole.original(four)) == (Reason.OVERSIZED, None, four)
    assert "4 events" in whole.rejection.detail
    big = pack([good(i) for i in range(3)] + [b"[" + b" " * 1000 + b"]"], "array")
    assert unpack(big, small)[0].rejection.reason is Reason.OVERSIZED


def test_a_batch_may_exceed_the_single_event_limit_but_an_event_may_not():
    small = load_config(overrides={"limits": {"max_event_bytes": 256, "max_message_bytes": 4096}})
    batch = pack([good(i) for i in range(10)], "array")
    assert len(batch) > 256 and all(u.event for u in unpack(batch, small))
    padded = raw({**ev("c1", "like", DAY0, event_id="e1"), "pad": "x" * 300})
    assert unpack(padded, small)[0].rejection.reason is Reason.OVERSIZED
    line = unpack(pack([good(1), padded], "ndjson"), small)[1]
    assert (line.index, line.rejection.reason) == (1, Reason.OVERSIZED)


def test_the_message_limit_must_cover_the_event_limit():
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"limits": {"max_event_bytes": 4096, "max_message_bytes": 1024}})
    assert err.value.key == "limits.max_message_bytes"


def test_pack_knows_two_shapes():
    with pytest.raises(ValueError, match="csv"):
        pack([good(1)], "csv")


def traffic(count: int, seed: int) -> list:
    return list(TrafficGenerator(TrafficSettings(customers=40, accounts=5, seed=seed, malformed_share=0.05,
                                                 late_share=0.02, duplicate_share=0.05)).messages(
        count, NOW - 10 * DAY, 10 * DAY))


def reads(scorer: Scorer) -> dict:
    return {cid: (state.watermark_ms, sorted(state.seen), scorer.customer(cid, NOW).es)
            for cid, state in scorer.customers.items()}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(1, 60), form=st.sampled_from(["array", "ndjson"]))
def test_batched_traffic_scores_exactly_like_the_same_events_one_per_message(seed, size, form):
    messages = traffic(400, seed)
    grouped = list(batched(messages, size, form, route=lambda key: len(key) % 3))
    assert sorted(m.value for _, members in grouped for m in members) == sorted(m.value for m in messages)
    single, batch = Scorer(CONFIG, evaluate_alerts=False), Scorer(CONFIG, evaluate_alerts=False)
    single_outcomes, batch_outcomes = Counter(), Counter()
    for message, members in grouped:  # the gate clock is the (batch) message's, as in the pipeline
        for m in members:
            single_outcomes.update((r.outcome, r.reason) for r in single.process_message(m.value, message.at_ms))
        results = batch.process_message(message.value, message.at_ms)
        assert len(results) == len(members)              # one result per event inside
        batch_outcomes.update((r.outcome, r.reason) for r in results)
    assert batch_outcomes == single_outcomes
    assert reads(batch) == reads(single)
    assert batch_outcomes[(Outcome.ACCEPTED, None)] > 0 and batch_outcomes[(Outcome.DUPLICATE, None)] > 0


def _one_line_object(value: bytes) -> bool:
    try:
        return b"\n" not in value and isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


def test_batched_keeps_each_route_in_order_and_malformed_text_alone():
    messages = traffic(600, 5)
    route = lambda key: key[-1] % 4 if key else 0  # noqa: E731
    grouped = list(batched(messages, 25, "array", route))
    alone = [m for message, members in grouped for m in members if message is m]
    inside = [members for message, members in grouped if message is not members[0]]
    assert alone and all(m.kind is Kind.MALFORMED and not _one_line_object(m.value) for m in alone)
    assert any(m.kind is Kind.MALFORMED for members in inside for m in members)  # bad fields travel inside
    for members in inside:
        assert 1 <= len(members) <= 25 and len({route(m.key) for m in members}) == 1
    for where in range(4):
        flat = [m for members in inside for m in members if route(m.key) == where]
        assert flat == [m for m in messages if route(m.key) == where and m not in alone]
