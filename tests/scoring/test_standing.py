"""The incremental aggregates equal a full recomputation (the business KPIs without scans).

A store that keeps only deltas (settle_batch / settle_due, applied to an AggregateBook)
must give the same business KPIs, leaderboards and at-risk list as the reference
Scorer visiting every customer, over any event sequence: late events within the
lateness, duplicates, membership churn, and time passing across bucket and window
boundaries, provided every customer is re-scored when its next change is due.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from scoring import standing as ranking
from scoring.alerts import Snapshot, evaluate, view
from scoring.formulas import Tier
from scoring.business import business_kpis, kpis_from
from scoring.config import load_config
from scoring.deltas import AggregateBook, Stored, settle_batch, settle_due
from scoring.engine import Scorer
from scoring.events import validate_event
from scoring.reasons import EventRejected
from scoring.segment_kpis import kpi_segments, segment_states
from scoring.standing import next_change, standing
from scoring.timeutil import DAY, HOUR
from tests.scoring.test_properties import BASE, CONFIG, event_lists, instants

SHORT_OVERRIDES = {
    # smb has KPIs of its own (kpis.segments), enterprise by its scorecard: customers move between them
    "kpis": {"features": ["search"], "window": "3d", "retention_period": "2d", "activation_period": "1d",
             "segments": ["smb"]},
    "scoring": {"window": "3d", "bucket": "1h"}, "aer": {"window": "2d"},
    "alerts": {"score_drop_window": "1d", "inactivity": "2d", "activation": "1d"},
    "time": {"allowed_lateness": "6h", "dedup_horizon": "12h"}, "history": {"horizon": "1d"},
    # segments change a customer's scorecard, and so its standing
    "scorecards": {"enterprise": {"weights": {"like": 8, "page_view": 0}, "tiers": {"excellent": 40, "moderate": 15}}},
}
SHORT = load_config(overrides=SHORT_OVERRIDES)


class DeltaStore:
    """Customers kept as the edge keeps them, plus the aggregates, all by deltas."""

    def __init__(self, config):
        self.config = config
        self.stored: dict[str, Stored] = {}
        self.book = AggregateBook(config)

    def batch(self, valid, now_ms):
        ids = {e.customer_id for e in valid}
        settled = settle_batch({c: self.stored[c] for c in ids if c in self.stored}, valid,
                               [now_ms] * len(valid), now_ms, self.config)
        self._keep(settled)
        return settled

    def due(self, now_ms):
        ids = self.book.due_by(now_ms)
        settled = settle_due({c: self.stored[c] for c in ids}, now_ms, self.config)
        self._keep(settled)
        return settled

    def _keep(self, settled):
        for delta in settled.deltas:
            self.book.apply(delta)
        self.stored.update(settled.stored)


def check_equal(store: DeltaStore, reference: Scorer, as_of: int) -> None:
    config = store.config
    assert kpis_from(store.book.aggregates(as_of), as_of, config) == business_kpis(
        reference.customers.values(), as_of, config), as_of
    for segment in kpi_segments(config):
        assert kpis_from(store.book.segment_aggregates(segment, as_of), as_of, config) == business_kpis(
            segment_states(reference.customers.values(), segment, config), as_of, config), (segment, as_of)
    fresh = [standing(s, reference.alert_states.get(c, {}), as_of, config) for c, s in reference.customers.items()]
    for bottom in (False, True):
        kept = ranking.leaderboard(store.book.standings.values(), 5, bottom)
        assert [s.customer_id for s in kept] == [c.customer_id for c in reference.leaderboard(as_of, 5, bottom)]
    assert ranking.at_risk(store.book.standings.values(), 10) == ranking.at_risk(fresh, 10)


def run(config, events, step_ms, hours):
    """Feed events in batches of three, a step apart, with due re-scores in between."""
    store, reference = DeltaStore(config), Scorer(config)

    def due_both(now):
        due = store.book.due_by(now)
        fired = store.due(now).alerts
        expected = []
        for cid in due:
            reference.customers[cid].evict(now, config)
            expected += reference._alerts(reference.customers[cid], now)
        assert fired == expected

    now = BASE + DAY
    for start in range(0, len(events), 3):
        chunk = []
        for event in events[start:start + 3]:
            try:
                chunk.append(validate_event(dict(event), config))
            except EventRejected:
                pass
        settled = store.batch(chunk, now)
        expected = reference.process_batch(chunk, now)
        assert [r.outcome for r in settled.results] == [r.outcome for r in expected.results]
        assert settled.alerts == expected.alerts
        check_equal(store, reference, now)
        now += step_ms
        due_both(now)
        check_equal(store, reference, now)
    for _ in range(hours):
        now += HOUR
        due_both(now)
        check_equal(store, reference, now)


@given(event_lists(instants(BASE, BASE + DAY + 5 * 60_000), max_size=24), st.integers(1, 3 * HOUR))
def test_deltas_equal_a_full_recomputation_with_defaults(events, step):
    run(CONFIG, events, step, hours=6)


@given(event_lists(instants(BASE, BASE + DAY + 5 * 60_000), max_size=24), st.integers(1, 6 * HOUR))
def test_deltas_equal_a_full_recomputation_across_windows(events, step):
    """Hour buckets and short windows: buckets, periods and deadlines pass within the run."""
    run(SHORT, events, step, hours=4 * 24)


# The KPI and AER windows shorter than the score window: each exit is a change of its own.
UNEVEN = load_config(overrides={**SHORT_OVERRIDES,
                                "kpis": {**SHORT_OVERRIDES["kpis"], "window": "2d"}, "aer": {"window": "1d"}})


def observed(state, at, config):
    """Everything time may change for one customer: standing, alert view, rule outcomes, buckets kept."""
    seen = view(state, at, config)
    fired, states = evaluate(Snapshot(Tier.EXCELLENT, 100.0), seen, {}, config)
    kept = copy.deepcopy(state)
    kept.evict(at, config)
    return (standing(state, {}, at, config), replace(seen.card, as_of_ms=0), seen.es_reference, seen.joined_ms,
            seen.activated, [a.rule for a in fired], states, kept.buckets, kept.sessions)


@pytest.mark.parametrize("config", [SHORT, UNEVEN], ids=["short", "uneven"])
@given(data=st.data())
def test_nothing_changes_before_the_next_change(config, data):
    """What time may change is constant from one change up to (not including) the next.

    Each customer is walked from change to change, re-scored (evicted) at each as the
    sweep does, until nothing is left to change: every kind of deadline is passed.
    """
    events = data.draw(event_lists(instants(BASE, BASE + DAY), max_size=12), label="events")
    as_of = data.draw(instants(BASE + DAY, BASE + 3 * DAY), label="as_of")
    reference = Scorer(config)
    for event in events:
        reference.process(dict(event), as_of)
    for cid, state in reference.customers.items():
        at = as_of
        while True:
            state.evict(at, config)
            due = next_change(state, at, config)
            last = at + 60 * DAY if due is None else due - 1
            inside = at + data.draw(st.integers(0, last - at), label="inside")
            assert observed(state, inside, config) == observed(state, at, config) == observed(state, last, config), (
                cid, at, due)
            if due is None:
                break
            at = due


def test_each_window_exit_is_a_next_change():
    """One like: it leaves the AER, score and KPI windows and the drop reference, goes, leaves MAU."""
    like = {"event_id": "x", "customer_id": "c", "type": "like", "ts": BASE + 30 * 60_000}
    reference = Scorer(SHORT)
    reference.process(like, BASE + HOUR)
    state = reference.customers["c"]
    steps, at = [], BASE + HOUR
    while (at := next_change(state, at, SHORT)) is not None:
        steps.append((at - BASE) // HOUR)
    # AER 2 d, score and KPI 3 d, the drop reference a day later, eviction after the retention
    # (those 4 days and a bucket), and MAU, read from the newest activity time, after 30 days
    assert SHORT.retention_ms == 4 * DAY + HOUR
    assert steps == [48, 72, 96, 97, 30 * 24]


def test_membership_churn_and_deadlines_over_weeks():
    """Joins, a leave and a rejoin, late points and duplicates; then weeks pass hour by hour."""
    def ev(i, cid, type_name, ts, **extra):
        return {"event_id": f"m{i}", "customer_id": cid, "type": type_name, "ts": ts, **extra}

    t = BASE
    events = [
        ev(0, "a", "member_joined", t), ev(1, "b", "member_joined", t + HOUR), ev(2, "c", "member_joined", t),
        ev(3, "a", "points_earned", t + 2 * HOUR, value=10), ev(4, "b", "like", t + 3 * HOUR, count=400),
        ev(5, "a", "member_left", t + 5 * HOUR), ev(6, "a", "member_joined", t + 20 * HOUR),
        ev(7, "b", "like", t + 2 * HOUR), ev(8, "b", "like", t + 3 * HOUR, count=400),  # late; a duplicate id next
        ev(4, "b", "like", t + 3 * HOUR, count=400), ev(9, "c", "session_start", t + HOUR, session_id="s"),
        ev(10, "c", "page_view", t + HOUR, session_id="s"), ev(11, "c", "session_end", t + 2 * HOUR,
                                                               session_id="s", value=60),
    ]
    run(SHORT, events, HOUR, hours=10 * 24)
    run(CONFIG, events, HOUR, hours=24)
