"""A customer's value (format 6: write token, standing, record) holds the customer exactly: what
the core reads back from it is what it wrote, ints stay ints and floats floats, and a store that
keeps customers only as these values scores, alerts and stands exactly like one in memory."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from scoring.config import load_config
from scoring.deltas import Stored, settle_batch, settle_due
from scoring.events import validate_event
from scoring.reasons import EventRejected
from scoring.state import count_totals
from scoring.timeutil import DAY, HOUR
from streams.state.layout import TOKEN_WIDTH, decode_customer, decode_standing, encode_customer
from tests.scoring.test_properties import BASE, event_lists, instants
from tests.scoring.test_standing import SHORT, SHORT_OVERRIDES


TOKEN = "0" * (TOKEN_WIDTH - 2) + "42"


def packed(stored: Stored) -> Stored:
    """The customer as the store reads it back: packed into its value and unpacked."""
    token, back = decode_customer(stored.state.customer_id, encode_customer(TOKEN, stored), dict(stored.state.seen))
    assert token == TOKEN
    return back


def without_zeros(stored: Stored) -> dict[int, dict[str, int]]:
    return {b: {k: n for k, n in c.items() if n} for b, c in stored.state.buckets.items() if any(c.values())}


def types_of(value: object) -> object:
    """The value's shape with every leaf replaced by its type: ints and floats told apart."""
    if isinstance(value, dict):
        return {k: types_of(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [types_of(v) for v in value]
    return type(value)


def valid(events: list[dict], config=SHORT) -> list:  # type: ignore[no-untyped-def]
    out = []
    for event in events:
        try:
            out.append(validate_event(event, config))
        except EventRejected:
            pass
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_store_of_packed_records_scores_exactly_like_one_in_memory(data):
    """Batches, due re-scores and time passing, with each customer packed and unpacked between
    every step: the same results, alerts, deltas, standings, due times and customers."""
    in_memory: dict[str, Stored] = {}
    as_records: dict[str, Stored] = {}
    now = BASE
    for _ in range(data.draw(st.integers(1, 4), label="steps")):
        now += data.draw(instants(0, 2 * DAY), label="time passing")
        events = valid(data.draw(event_lists(instants(now - 10 * HOUR, now)), label="events"))
        ids = {e.customer_id for e in events}
        a = settle_batch({c: in_memory[c] for c in ids if c in in_memory}, events, [now] * len(events), now, SHORT)
        b = settle_batch({c: as_records[c] for c in ids if c in as_records}, events, [now] * len(events), now, SHORT)
        assert_same(a, b)
        in_memory.update(a.stored)
        as_records.update({cid: packed(s) for cid, s in b.stored.items()})
        for stored in as_records.values():
            assert_running_counts_are_a_recount(stored)
        now += data.draw(instants(0, 3 * DAY), label="until the sweep")
        due = sorted(in_memory)
        a = settle_due({c: in_memory[c] for c in due}, now, SHORT)
        b = settle_due({c: as_records[c] for c in due}, now, SHORT)
        assert_same(a, b)
        in_memory.update(a.stored)
        as_records.update({cid: packed(s) for cid, s in b.stored.items()})


def assert_running_counts_are_a_recount(stored: Stored) -> None:
    """The window counts a record carries equal a recount of its buckets from the same start."""
    for running in stored.state.running:
        if running is not None:
            assert running.counts == count_totals(stored.state.buckets, running.first)
            assert types_of(running.counts) == types_of(count_totals(stored.state.buckets, running.first))


def assert_same(a, b) -> None:
    assert [(r.outcome, r.reason) for r in a.results] == [(r.outcome, r.reason) for r in b.results]
    assert [x.to_dict() for x in a.alerts] == [x.to_dict() for x in b.alerts]
    assert [c.to_dict() for c in a.cards] == [c.to_dict() for c in b.cards]
    for x, y in zip(a.deltas, b.deltas, strict=True):
        assert (x.customer_id, x.counters, x.seen_floor, x.facts, x.old, x.new, x.due_ms, x.due_changed) == (
            y.customer_id, y.counters, y.seen_floor, y.facts, y.old, y.new, y.due_ms, y.due_changed)
        assert types_of(x.new.sums) == types_of(y.new.sums) and type(x.new.cer) is type(y.new.cer)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_record_reads_back_as_the_customer_it_was_with_ints_kept_ints(data):
    now = BASE + data.draw(instants(0, 5 * DAY))
    events = valid(data.draw(event_lists(instants(now - 10 * HOUR, now))))
    settled = settle_batch({}, events, [now] * len(events), now, SHORT)
    for cid, stored in settled.stored.items():
        back = packed(stored)
        state, again = stored.state, back.state
        assert without_zeros(back) == without_zeros(stored)
        assert types_of(again.buckets) == types_of(without_zeros(stored))
        assert (again.watermark_ms, again.last_active_ms, again.last_aer_ms, again.features, again.membership,
                again.sessions, again.account, again.segment, again.seen) == (
            state.watermark_ms, state.last_active_ms, state.last_aer_ms, state.features, state.membership,
            state.sessions, state.account, state.segment, state.seen)
        assert (back.alert_states, back.snapshot, back.standing, back.due_ms) == (
            stored.alert_states, stored.snapshot, stored.standing, stored.due_ms)
        assert again.running == state.running       # the window counts kept, not summed again
        assert_running_counts_are_a_recount(back)
        assert type(back.standing.cer) is type(stored.standing.cer) and type(back.standing.es) is float
        assert types_of(dict(back.standing.sums)) == types_of(dict(stored.standing.sums))


def test_the_value_is_a_token_then_positional_arrays_any_messagepack_reader_decodes():
    """The documented layout (docs/redis-layout.md): counter names once, buckets index them."""
    now = BASE + DAY
    events = valid([{"event_id": "e1", "customer_id": "c1", "type": "like", "ts": now - 1000},
                    {"event_id": "e2", "customer_id": "c1", "type": "like", "ts": now - 500},
                    {"event_id": "e3", "customer_id": "c1", "type": "page_view", "ts": now - 400}])
    stored = settle_batch({}, events, [now] * 3, now, SHORT).stored["c1"]
    value = encode_customer(TOKEN, stored)
    assert value[:TOKEN_WIDTH] == TOKEN.encode()
    values = msgpack.Unpacker()
    values.feed(value[TOKEN_WIDTH:])
    standing, record = values.unpack(), values.unpack()
    watermark, last_active, _, _, _, account, segment, _, _, names, buckets, sessions, due, running, traits, imports = record
    assert watermark == now - 400 and last_active == now - 400 and account is None and segment is None
    assert traits == [] and imports == []          # [name, ts, event id, value, ...], [id, row, ts, ...]: none
    assert sessions == [] and due == stored.due_ms is not None
    counts = {names[row[i]]: row[i + 1] for row in buckets for i in range(1, len(row), 2)}
    assert counts["n.like"] == 2 and counts["n.page_view"] == 1 and len(names) == len(set(names))
    # the score window's running counts, by the same names: [first bucket, [name position, count ...]]
    first, window = running[0]
    assert first <= min(row[0] for row in buckets)
    assert {names[window[i]]: window[i + 1] for i in range(0, len(window), 2)} == {"n.like": 2, "n.page_view": 1}
    es, cer, tier, *_ = standing
    assert (es, cer, tier) == (stored.standing.es, stored.standing.cer, stored.standing.tier.value)
    assert decode_standing("c1", value) == stored.standing


def test_a_value_written_before_the_running_counts_reads_back_with_them_summed_on_use():
    """A record of 13 elements (written before the window counts went with it) still reads: the
    counts are summed from its buckets when a score first needs them."""
    now = BASE + DAY
    events = valid([{"event_id": "e1", "customer_id": "c1", "type": "like", "ts": now - 1000}])
    stored = settle_batch({}, events, [now], now, SHORT).stored["c1"]
    values = msgpack.Unpacker()
    values.feed(encode_customer(TOKEN, stored)[TOKEN_WIDTH:])
    standing, record = values.unpack(), values.unpack()
    older = TOKEN.encode() + msgpack.packb(standing) + msgpack.packb(record[:13])
    _, back = decode_customer("c1", older, {})
    assert back.state.running == [None, None]
    first = stored.state.running[0].first
    assert back.state.counts_from(first) == stored.state.counts_from(first) == {"like": 1}


def test_traits_go_with_the_record_and_a_value_written_before_them_reads_back_without():
    now = BASE + DAY
    config = load_config(overrides={**SHORT_OVERRIDES, "scoring": {**SHORT_OVERRIDES["scoring"], "segment_from": "plan"}})
    events = valid([{"event_id": "e1", "customer_id": "c1", "type": "traits", "ts": now - 1000,
                     "traits": {"plan": "pro", "arr": 1200.5, "renewal_date": "2027-03-01", "email": "x@y"}}], config)
    stored = settle_batch({}, events, [now], now, config).stored["c1"]
    value = encode_customer(TOKEN, stored)
    _, back = decode_customer("c1", value, {})
    assert back.state.traits == stored.state.traits == {
        "arr": (now - 1000, "e1", 1200.5), "plan": (now - 1000, "e1", "pro"),
        "renewal_date": (now - 1000, "e1", 1_803_859_200_000)}     # not allowed: email
    assert back.state.segment_in(config) == "pro" and back.state.segment_name is None
    assert decode_standing("c1", value).traits == stored.standing.traits == (
        ("arr", 1200.5), ("plan", "pro"), ("renewal_date", "2027-03-01"))      # as batch reads show them
    values = msgpack.Unpacker()
    values.feed(value[TOKEN_WIDTH:])
    standing, record = values.unpack(), values.unpack()
    _, older = decode_customer("c1", TOKEN.encode() + msgpack.packb(standing) + msgpack.packb(record[:14]), {})
    assert older.state.traits is None


def test_the_standing_sums_keep_the_positions_stored_standings_name_them_by():
    """A stored standing names each sum by its position in SUMS: reordering SUMS (or inserting
    into it) would read every stored standing wrong. Changing it needs a new state format."""
    from scoring.standing import SUMS
    from streams.state.layout import FORMAT

    assert FORMAT == 7 and SUMS == (
        "members", "active_members", "members_at_start", "members_new", "members_lost",
        "cohort", "activated", "customers_in_window", "purchasers", "scored",
        "tier.low", "tier.moderate", "tier.excellent", "below_benchmark", "es_micro", "cer")


def test_a_write_token_of_another_width_is_refused_rather_than_written():
    """The value's first TOKEN_WIDTH bytes are the token: a shorter one would shift the rest."""
    now = BASE + DAY
    events = valid([{"event_id": "e1", "customer_id": "c1", "type": "like", "ts": now - 1000}])
    stored = settle_batch({}, events, [now], now, SHORT).stored["c1"]
    with pytest.raises(ValueError, match=f"{TOKEN_WIDTH} characters"):
        encode_customer("42", stored)
