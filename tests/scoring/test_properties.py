"""Property tests of the scoring core: score invariants and the streaming guarantees.

The scores (ES in 0..100, CER = sum n*w, weight changes without replay) and the
streaming guarantees (event-time windows with allowed lateness, order independence,
idempotence by event_id). States are always built through scoring.engine.Scorer from event dicts.
"""

from __future__ import annotations

import copy

from hypothesis import assume, given, strategies as st

from scoring import formulas
from scoring.business import business_kpis
from scoring.catalogue import BUILTIN_TYPES, SENTIMENTS
from scoring.config import load_config
from scoring.engine import Outcome, Scorer
from scoring.reasons import Reason
from scoring.scores import score_card
from scoring.timeutil import DAY, HOUR, SECOND
from tests.builders import ev

# A named feature so per-feature usage is exercised too; otherwise the defaults.
CONFIG = load_config(overrides={"kpis": {"features": ["search"]}})
BASE = 20_700 * DAY  # 2026-09-04T00:00:00Z, a bucket boundary
TYPES = sorted(BUILTIN_TYPES)
CUSTOMERS = ("c0", "c1", "c2")
ACCOUNTS = ("a1", "a2")
SCORED_TYPES = sorted(CONFIG.scoring.weights)
# Types whose events combine in more than a sum (sessions, membership, last-use times, surveys).
TYPE_GROUPS = (
    ("session_start", "page_view", "action", "session_end"),
    ("member_joined", "member_left", "points_earned", "points_redeemed"),
    ("feature_used", "like"),
    ("nps_response", "csat_response", "ces_response", "review", "social_mention", "ticket_resolved"),
    ("traits", "like"),
)


# --- strategies --------------------------------------------------------------------------------


def instants(low: int, high: int):
    """Times (or durations) in [low, high] spread over the whole range.

    Hypothesis draws from a huge integer range mostly near its low end, so a day, an hour
    and a millisecond offset are drawn separately.
    """
    return st.builds(
        lambda days, hours, ms: min(high, low + days * DAY + hours * HOUR + ms),
        st.integers(0, (high - low) // DAY),
        st.integers(0, 23),
        st.integers(0, HOUR - 1),
    )


@st.composite
def event_bodies(draw, ts, types=TYPES):
    """One valid event (without event_id) of a built-in type, with its per-type fields."""
    type_name = draw(st.sampled_from(types))
    event = {"customer_id": draw(st.sampled_from(CUSTOMERS)), "type": type_name, "ts": draw(ts)}
    if draw(st.booleans()):
        event["count"] = draw(st.integers(1, 40))
    if type_name in ("session_start", "session_end") or (
        type_name in ("page_view", "action") and draw(st.booleans())
    ):
        event["session_id"] = draw(st.sampled_from(("s1", "s2", "s3")))
    if type_name == "session_end":
        event["value"] = draw(st.integers(0, 3600))
    elif type_name == "purchase":
        event["value"] = draw(st.integers(0, 500_000)) / 100  # an amount with cents
    elif type_name == "nps_response":
        event["value"] = draw(st.integers(0, 10))
    elif type_name == "csat_response":
        event["value"] = draw(st.integers(1, 5))
    elif type_name == "ces_response":
        event["value"] = draw(st.integers(1, 7))
    elif type_name in ("points_earned", "points_redeemed") and draw(st.booleans()):
        event["value"] = draw(st.integers(0, 1000))
    elif type_name == "feature_used":
        event["feature"] = draw(st.sampled_from(("search", "export", "dashboards")))
    elif type_name in ("review", "social_mention"):
        event["sentiment"] = draw(st.sampled_from(SENTIMENTS))
    elif type_name == "ticket_resolved":
        event["first_contact"] = draw(st.booleans())
        if draw(st.booleans()):
            event["value"] = draw(st.integers(0, 7200))
    if type_name == "traits" or draw(st.integers(0, 9)) == 0:      # a trait set (or unset) by any event
        event["traits"] = draw(st.dictionaries(st.sampled_from(("plan", "arr", "seats_used", "email")),
                                               st.sampled_from((None, "pro", "free", 3, 12.5)), max_size=3)
                               .map(lambda t: {k: v for k, v in t.items()
                                               if v is None or isinstance(v, str) == (k in ("plan", "email"))}))
    if draw(st.integers(0, 3)) == 0:
        event["account_id"] = draw(st.sampled_from(ACCOUNTS))
    if draw(st.integers(0, 5)) == 0:
        event["segment"] = draw(st.sampled_from(("smb", "enterprise")))
    if draw(st.integers(0, 2)) == 0:
        event["channel"] = draw(st.sampled_from(("web", "phone", "kiosk")))     # kiosk: off the allow-list
    if type_name == "scan":
        for name, values in (("device", ("ios", "watch")), ("location", ("expo", "store"))):
            if draw(st.booleans()):
                event[name] = draw(st.sampled_from(values))
    return event


@st.composite
def event_lists(draw, ts, min_size=1, max_size=20):
    """Valid events with unique ids e0, e1, ...

    Each example draws from a few types only, so that several events of one type for one
    customer (where order, max/min and sums matter) are common rather than rare.
    """
    types = draw(
        st.lists(st.sampled_from(TYPES), min_size=1, max_size=6, unique=True) | st.sampled_from(TYPE_GROUPS),
        label="types",
    )
    bodies = draw(st.lists(event_bodies(ts, types), min_size=min_size, max_size=max_size), label="bodies")
    return [{"event_id": f"e{i}", **body} for i, body in enumerate(bodies)]


def feed(config, events, now_ms):
    scorer = Scorer(config)
    results = [scorer.process(dict(event), now_ms) for event in events]
    return scorer, results


def assert_same_reads(a: Scorer, b: Scorer, as_ofs):
    """Same score cards, account roll-ups, leaderboards and business KPIs at each as_of."""
    assert sorted(a.customers) == sorted(b.customers)
    for as_of in as_ofs:
        for customer_id in a.customers:
            assert a.customer(customer_id, as_of) == b.customer(customer_id, as_of), (customer_id, as_of)
        for account_id in ACCOUNTS:
            assert a.account(account_id, as_of) == b.account(account_id, as_of), (account_id, as_of)
        assert a.leaderboard(as_of, limit=2) == b.leaderboard(as_of, limit=2)
        assert a.leaderboard(as_of, limit=2, bottom=True) == b.leaderboard(as_of, limit=2, bottom=True)
        assert a.kpis(as_of) == b.kpis(as_of), as_of


# --- pure score invariants -----------------------------------------------------------------------

NAMES = st.sampled_from(("a", "b", "c", "d", "e"))
COUNT_VALUES = st.integers(0, 10**7) | st.floats(0, 1e7, allow_nan=False)


@st.composite
def es_inputs(draw):
    weights = draw(st.dictionaries(NAMES, st.integers(1, 10) | st.floats(0.01, 10), min_size=1))
    targets = {name: draw(st.floats(0.01, 1e6)) for name in weights}
    counts = draw(st.dictionaries(NAMES, COUNT_VALUES))
    return counts, weights, targets


@given(es_inputs())
def test_es_is_within_0_and_100(inputs):
    counts, weights, targets = inputs
    assert 0.0 <= formulas.engagement_score(counts, weights, targets) <= 100.0


@given(es_inputs())
def test_es_is_100_when_every_target_is_met_and_0_without_events(inputs):
    _, weights, targets = inputs
    weights = {name: max(1, round(w)) for name, w in weights.items()}  # config weights are integers
    met = {name: target * 2 for name, target in targets.items()}
    assert formulas.engagement_score(met, weights, targets) == 100.0
    assert formulas.engagement_score({}, weights, targets) == 0.0


@given(es_inputs(), NAMES, COUNT_VALUES)
def test_es_is_monotone_in_any_single_count(inputs, name, extra):
    counts, weights, targets = inputs
    more = dict(counts)
    more[name] = more.get(name, 0) + extra
    assert formulas.engagement_score(more, weights, targets) >= formulas.engagement_score(counts, weights, targets)


INT_COUNTS = st.dictionaries(NAMES, st.integers(0, 10**6))
INT_WEIGHTS = st.dictionaries(NAMES, st.integers(1, 10), min_size=1)


@given(INT_COUNTS, INT_COUNTS, INT_WEIGHTS)
def test_cer_is_additive(a, b, weights):
    both = {name: a.get(name, 0) + b.get(name, 0) for name in set(a) | set(b)}
    cer = formulas.customer_engagement_rate
    assert cer(both, weights) == cer(a, weights) + cer(b, weights)


@given(INT_COUNTS, st.integers(0, 1000), INT_WEIGHTS)
def test_cer_is_homogeneous(a, k, weights):
    scaled = {name: k * n for name, n in a.items()}
    cer = formulas.customer_engagement_rate
    assert cer(scaled, weights) == k * cer(a, weights)


SCORES = st.floats(-10, 110, allow_nan=False)


@given(SCORES, SCORES, st.floats(0, 100), st.floats(0, 100))
def test_tier_is_monotone(x, y, t1, t2):
    low, high = min(x, y), max(x, y)
    moderate, excellent = min(t1, t2), max(t1, t2)
    assert formulas.tier(low, excellent, moderate).rank <= formulas.tier(high, excellent, moderate).rank


BAND_RANK = {formulas.Band.LOW: 0, formulas.Band.MODERATE: 1, formulas.Band.HIGH: 2}


@given(SCORES, SCORES, st.floats(0, 100), st.floats(0, 100))
def test_aer_band_is_monotone(x, y, l1, l2):
    low, high = min(x, y), max(x, y)
    low_below, high_above = min(l1, l2), max(l1, l2)
    assert BAND_RANK[formulas.aer_band(low, low_below, high_above)] <= BAND_RANK[
        formulas.aer_band(high, low_below, high_above)
    ]


# --- running window counts ---------------------------------------------------------------------------


@given(st.data())
def test_running_window_counts_equal_a_recount_of_the_buckets(data):
    """`counts_from` keeps each window's counts running (added as counters change, the
    buckets that leave subtracted): whatever the order of events, reads and time moving
    forward, backward or far ahead, they equal a recount of the buckets the state holds."""
    start = data.draw(instants(BASE, BASE + DAY), label="start")
    events = data.draw(event_lists(instants(start, start + 60 * DAY), max_size=30), label="events")
    scorer = Scorer(CONFIG)
    now = start
    for event in events:
        now = max(now, event["ts"]) + data.draw(instants(0, 3 * DAY), label="delay")
        scorer.process(dict(event), now)          # a view: both running windows move to `now`
        for state in scorer.customers.values():
            for _ in range(data.draw(st.integers(0, 2), label="reads")):
                as_of = data.draw(instants(start, now + 120 * DAY), label="as of")
                first = as_of // CONFIG.scoring.bucket_ms - CONFIG.scoring.window_ms // CONFIG.scoring.bucket_ms + 1
                slot = data.draw(st.integers(0, 1), label="slot")
                recount = {}
                for bucket, counters in state.buckets.items():
                    for key, amount in counters.items():
                        if bucket >= first and key.startswith("n."):
                            recount[key[2:]] = recount.get(key[2:], 0) + amount
                assert state.counts_from(first, slot) == recount


# --- eviction --------------------------------------------------------------------------------------


@given(st.data())
def test_eviction_changes_no_score_or_kpi_from_then_on(data):
    start = data.draw(instants(BASE, BASE + DAY), label="start")
    events = data.draw(event_lists(instants(start, start + 90 * DAY), max_size=25), label="events")
    # Processed as a live stream would: in event order with the clock at the newest event
    # (plus a small delay), so each apply also evicts what its own clock allows.
    events.sort(key=lambda e: e["ts"])
    scorer = Scorer(CONFIG)
    now = start
    for event in events:
        now = max(now, event["ts"] + data.draw(instants(0, HOUR), label="delay"))
        scorer.process(dict(event), now)
    evict_at = now + data.draw(instants(0, 60 * DAY), label="evict after")
    assert_eviction_is_invisible(scorer, evict_at, evict_at + data.draw(instants(1, 45 * DAY), label="read after"))


def assert_eviction_is_invisible(scorer: Scorer, evict_at: int, later: int) -> None:
    kept = copy.deepcopy(scorer.customers)
    evicted = copy.deepcopy(scorer.customers)
    for state in evicted.values():
        state.evict(evict_at, CONFIG)
    for as_of in (evict_at, later):
        for customer_id in kept:
            assert score_card(evicted[customer_id], as_of, CONFIG) == score_card(kept[customer_id], as_of, CONFIG)
        assert business_kpis(evicted.values(), as_of, CONFIG) == business_kpis(kept.values(), as_of, CONFIG)


@given(st.data())
def test_eviction_keeps_membership_and_week_one_kpis(data):
    # Members joining 0..60 days before the eviction, active within days of joining, some
    # leaving later: retention, churn and week-1 engagement read old buckets and membership.
    evict_at = BASE + 100 * DAY + data.draw(instants(0, DAY), label="evict at")
    events = []
    for c in range(data.draw(st.integers(1, 3), label="customers")):
        joined = evict_at - data.draw(instants(0, 60 * DAY), label="joined before")
        events.append({"customer_id": f"m{c}", "type": "member_joined", "ts": joined})
        for offset in data.draw(st.lists(instants(0, 10 * DAY), max_size=3), label="active after"):
            kind = data.draw(st.sampled_from(("like", "points_earned", "ad_impression")), label="type")
            events.append({"customer_id": f"m{c}", "type": kind, "ts": min(joined + offset, evict_at)})
        if data.draw(st.booleans(), label="leaves"):
            left = joined + data.draw(instants(0, 50 * DAY), label="left after")
            events.append({"customer_id": f"m{c}", "type": "member_left", "ts": min(left, evict_at)})
    events.sort(key=lambda e: e["ts"])
    scorer = Scorer(CONFIG)
    for i, event in enumerate(events):
        assert scorer.process({"event_id": f"e{i}", **event}, event["ts"]).outcome is Outcome.ACCEPTED
    assert_eviction_is_invisible(scorer, evict_at, evict_at + data.draw(instants(1, 45 * DAY), label="read after"))


# --- lateness and future skew boundaries -----------------------------------------------------------

LATENESS = st.sampled_from(("0ms", "1ms", "1s", "1h", "1d", "2d"))
SKEW = st.sampled_from(("0ms", "1ms", "1s", "5m", "1h"))


@given(LATENESS, st.lists(instants(0, 5 * DAY), min_size=1, max_size=5), instants(0, DAY))
def test_lateness_boundary(lateness, offsets, now_after):
    config = load_config(overrides={"time": {"allowed_lateness": lateness, "dedup_horizon": "3d"}})
    allowed = config.time.allowed_lateness_ms
    scorer = Scorer(config)
    stamps = sorted(BASE + 10 * DAY + o for o in offsets)
    now = stamps[-1] + now_after
    for i, ts in enumerate(stamps):
        assert scorer.process(ev("c", "like", ts, event_id=f"p{i}"), now).outcome is Outcome.ACCEPTED
    watermark = stamps[-1]
    assert scorer.customers["c"].watermark_ms == watermark

    before = copy.deepcopy(scorer.customers)
    too_late = scorer.process(ev("c", "like", watermark - allowed - 1, event_id="late"), now)
    assert too_late.outcome is Outcome.REJECTED
    assert too_late.reason is Reason.TS_TOO_LATE
    assert scorer.customers == before  # a rejected event leaves no trace

    on_the_edge = scorer.process(ev("c", "like", watermark - allowed, event_id="edge"), now)
    assert on_the_edge.outcome is Outcome.ACCEPTED
    assert scorer.customers["c"].watermark_ms == watermark


@given(SKEW, instants(BASE, BASE + 30 * DAY), st.booleans())
def test_future_skew_boundary(skew, now, known_customer):
    config = load_config(overrides={"time": {"max_future_skew": skew}})
    scorer = Scorer(config)
    if known_customer:  # with a watermark as well as without one
        assert scorer.process(ev("c", "like", now - HOUR, event_id="p"), now).outcome is Outcome.ACCEPTED
    limit = now + config.time.max_future_skew_ms

    before = copy.deepcopy(scorer.customers)
    ahead = scorer.process(ev("c", "like", limit + 1, event_id="ahead"), now)
    assert ahead.outcome is Outcome.REJECTED
    assert ahead.reason is Reason.TS_IN_FUTURE
    assert scorer.customers == before

    assert scorer.process(ev("c", "like", limit, event_id="at-limit"), now).outcome is Outcome.ACCEPTED
    assert scorer.customers["c"].watermark_ms == limit


def test_boundaries_with_default_config():
    # defaults: allowed_lateness 1d, max_future_skew 5m
    scorer = Scorer(CONFIG)
    now = BASE + 5 * DAY
    assert scorer.process(ev("c", "like", now, event_id="a"), now).outcome is Outcome.ACCEPTED
    assert scorer.process(ev("c", "like", now - DAY, event_id="b"), now).outcome is Outcome.ACCEPTED
    assert scorer.process(ev("c", "like", now - DAY - 1, event_id="c"), now).reason is Reason.TS_TOO_LATE
    assert scorer.process(ev("c", "like", now + 5 * 60 * SECOND, event_id="d"), now).outcome is Outcome.ACCEPTED
    assert scorer.process(ev("c", "like", now + 5 * 60 * SECOND + 1, event_id="e"), now).reason is Reason.TS_IN_FUTURE


# --- order independence --------------------------------------------------------------------------------


@given(st.data())
def test_any_order_within_the_allowed_lateness_gives_the_same_state(data):
    allowed = CONFIG.time.allowed_lateness_ms
    start = data.draw(instants(BASE, BASE + 2 * DAY), label="start")
    events = data.draw(event_lists(instants(start, start + allowed)), label="events")
    shuffled = data.draw(st.permutations(events), label="order")
    now = start + allowed + data.draw(instants(0, HOUR), label="delay")

    a, results_a = feed(CONFIG, events, now)
    b, results_b = feed(CONFIG, shuffled, now)
    assert all(r.outcome is Outcome.ACCEPTED for r in results_a + results_b)
    assert a.customers == b.customers
    assert_same_reads(a, b, (start, now, now + 3 * DAY, now + 31 * DAY))


# --- idempotence -----------------------------------------------------------------------------------------


@given(st.data())
def test_duplicates_count_once(data):
    start = data.draw(instants(BASE, BASE + 2 * DAY), label="start")
    # wider than the allowed lateness (1d) and the dedup horizon (2d): re-sends whose id
    # has been forgotten must then be too late, never counted a second time
    span = 4 * DAY
    events = data.draw(event_lists(instants(start, start + span), max_size=15), label="events")
    repeats = data.draw(st.lists(st.integers(0, 3), min_size=len(events), max_size=len(events)), label="repeats")
    stream = [event for event, extra in zip(events, repeats) for _ in range(1 + extra)]
    stream = data.draw(st.permutations(stream), label="interleaving")
    once, seen = [], set()
    for event in stream:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            once.append(event)
    now = start + span

    with_dups, results_dups = feed(CONFIG, stream, now)
    single, results_single = feed(CONFIG, once, now)
    accepted_ids = [r.event.event_id for r in results_dups if r.outcome is Outcome.ACCEPTED]
    assert len(accepted_ids) == len(set(accepted_ids))
    assert sorted(accepted_ids) == sorted(r.event.event_id for r in results_single if r.outcome is Outcome.ACCEPTED)
    assert with_dups.customers == single.customers
    assert_same_reads(with_dups, single, (now, now + 10 * DAY))


@given(st.data())
def test_an_immediate_resend_is_reported_as_duplicate(data):
    start = data.draw(instants(BASE, BASE + DAY), label="start")
    events = data.draw(event_lists(instants(start, start + HOUR), max_size=8), label="events")
    scorer = Scorer(CONFIG)
    now = start + HOUR
    for event in events:
        assert scorer.process(dict(event), now).outcome is Outcome.ACCEPTED
        after_first = copy.deepcopy(scorer.customers)
        assert scorer.process(dict(event), now).outcome is Outcome.DUPLICATE
        assert scorer.customers == after_first


# --- weight changes re-score without replay --------------------------------------------------------------

WEIGHT_CHANGES = st.dictionaries(st.sampled_from(SCORED_TYPES), st.integers(0, 10), min_size=1, max_size=8)


@given(WEIGHT_CHANGES, WEIGHT_CHANGES, st.data())
def test_weight_change_needs_no_replay(changes_a, changes_b, data):
    features = {"kpis": {"features": ["search"]}}
    config_a = load_config(overrides={**features, "weights": changes_a})
    config_b = load_config(overrides={**features, "weights": changes_b})
    assume(dict(config_a.scoring.weights) != dict(config_b.scoring.weights))
    start = data.draw(instants(BASE, BASE + DAY), label="start")
    events = data.draw(event_lists(instants(start, start + 20 * DAY)), label="events")
    events.sort(key=lambda e: e["ts"])
    now = start + 20 * DAY

    under_a, _ = feed(config_a, events, now)
    under_b, _ = feed(config_b, events, now)
    assert under_a.customers == under_b.customers  # state does not depend on weights
    for as_of in (now, now + 15 * DAY):
        for customer_id, state in under_a.customers.items():
            assert score_card(state, as_of, config_b) == under_b.customer(customer_id, as_of)
        assert business_kpis(under_a.customers.values(), as_of, config_b) == under_b.kpis(as_of)
    # a restart with config B over the state built under A reads exactly what B alone built
    rescored = Scorer(config_b, customers=copy.deepcopy(under_a.customers))
    assert_same_reads(rescored, under_b, (now, now + 15 * DAY))


def test_weight_change_does_change_the_score():
    # guards the property above against a scorer that ignores weights altogether
    event = {"event_id": "e", "customer_id": "c", "type": "like", "ts": BASE, "count": 10}
    scorer, _ = feed(CONFIG, [event], BASE)
    heavier = load_config(overrides={"weights": {"like": 7}})
    assert scorer.customer("c", BASE).cer == 10  # 10 likes x 1
    assert score_card(scorer.customers["c"], BASE, heavier).cer == 70  # 10 likes x 7
