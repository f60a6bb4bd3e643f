"""The reference engine and the business KPIs over a hand-worked population."""

from __future__ import annotations

import pytest

from scoring import formulas
from scoring.config import load_config
from scoring.engine import Outcome, Scorer
from scoring.reasons import Reason
from devstack.traffic import Kind, TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from scoring.windows import bucket_of
from tests.builders import CONFIG, DAY0, NOW, ev


def hand_worked_population() -> list[dict]:
    """Five members and one anonymous web customer; see the expected values in the tests."""
    return [
        ev("m1", "member_joined", NOW - 60 * DAY, account_id="acme"),
        ev("m1", "points_earned", NOW - 2 * DAY, value=100),
        ev("m1", "page_view", NOW - 1 * HOUR),
        ev("m2", "member_joined", NOW - 60 * DAY),
        ev("m2", "action", NOW - 3 * DAY),
        ev("m3", "member_joined", NOW - 45 * DAY),
        ev("m3", "member_left", NOW - 10 * DAY),
        ev("m4", "member_joined", NOW - 20 * DAY),
        ev("m4", "points_redeemed", NOW - 19 * DAY, value=50),
        ev("m5", "member_joined", NOW - 10 * DAY),
        # c6: two sessions (one bounce), commerce, surveys, marketing, support, sentiment
        ev("c6", "session_start", NOW - 3 * HOUR, session_id="s1", account_id="acme"),
        ev("c6", "page_view", NOW - 3 * HOUR, session_id="s1"),
        ev("c6", "session_end", NOW - 3 * HOUR + 120_000, session_id="s1", value=120),
        ev("c6", "session_start", NOW - 2 * HOUR, session_id="s2"),
        ev("c6", "page_view", NOW - 2 * HOUR, session_id="s2", count=3),
        ev("c6", "action", NOW - 2 * HOUR, session_id="s2"),
        ev("c6", "session_end", NOW - 2 * HOUR + 300_000, session_id="s2", value=300),
        ev("c6", "conversion", NOW - 2 * HOUR),
        ev("c6", "purchase", NOW - 2 * HOUR, value=50.00),
        ev("c6", "purchase", NOW - 2 * HOUR, value=30.00),
        ev("c6", "nps_response", NOW - 2 * HOUR, value=10),
        ev("c6", "nps_response", NOW - 2 * HOUR, value=6),
        ev("c6", "nps_response", NOW - 2 * HOUR, value=8),
        ev("c6", "csat_response", NOW - 2 * HOUR, value=5),
        ev("c6", "csat_response", NOW - 2 * HOUR, value=4),
        ev("c6", "csat_response", NOW - 2 * HOUR, value=2),
        ev("c6", "ces_response", NOW - 2 * HOUR, value=2),
        ev("c6", "ces_response", NOW - 2 * HOUR, value=4),
        ev("c6", "ad_impression", NOW - 2 * HOUR, count=10),
        ev("c6", "ad_click", NOW - 2 * HOUR),
        ev("c6", "email_delivered", NOW - 2 * HOUR, count=4),
        ev("c6", "email_open", NOW - 2 * HOUR),
        ev("c6", "ticket_resolved", NOW - 2 * HOUR, first_contact=True, value=600),
        ev("c6", "ticket_resolved", NOW - 2 * HOUR, first_contact=False, value=1200),
        ev("c6", "review", NOW - 2 * HOUR, sentiment="positive"),
        ev("c6", "review", NOW - 2 * HOUR, sentiment="negative"),
        ev("c6", "review", NOW - 2 * HOUR, sentiment="neutral"),
        ev("c6", "review", NOW - 2 * HOUR, sentiment="positive"),
        ev("c6", "social_mention", NOW - 2 * HOUR, sentiment="negative"),
        ev("c6", "feature_used", NOW - 2 * HOUR, feature="search"),
    ]


@pytest.fixture
def population():
    config = load_config(overrides={"kpis": {"features": ["search"]}})
    scorer = Scorer(config)
    for event in hand_worked_population():
        result = scorer.process(event, NOW)
        assert result.outcome is Outcome.ACCEPTED, (event, result)
    return scorer


def test_loyalty_and_usage_kpis_hand_worked(population):
    k = population.kpis(NOW)
    assert (k.members, k.active_members) == (4, 2)   # m1 m2 m4 m5; m1 and m4 used points in 30 d
    assert k.aer == 50.0 and k.aer_band == "high"
    assert (k.dau, k.wau, k.mau) == (2, 3, 4)        # m1 c6 today; + m2 this week; + m4 this month
    assert k.stickiness == 50.0
    # period start NOW-30d: members m1 m2 m3 (S=3); now 4 (E); new m4 m5 (N=2); lost m3
    assert (k.members_at_start, k.members_new, k.members_lost) == (3, 2, 1)
    assert k.retention_rate == pytest.approx(200 / 3)
    assert k.churn_rate == pytest.approx(100 / 3)
    assert k.turnover_rate == pytest.approx(100 * 1 / 3.5)   # 1 lost / ((3 + 4) / 2)
    # cohort: joins in (NOW-37d, NOW-7d] = m4, m5; only m4 active in its first week
    assert (k.new_members, k.week_one_engagement) == (2, 50.0)
    assert k.feature_usage == {"*": 25.0, "search": 25.0}  # c6 of the 4 active in the window


def test_experience_marketing_commerce_support_kpis_hand_worked(population):
    k = population.kpis(NOW)
    assert (k.nps, k.nps_responses) == (0.0, 3)      # one promoter (10), one detractor (6), one passive (8)
    assert k.csat == pytest.approx(200 / 3)          # 5 and 4 of 5, 4, 2
    assert k.ces == 3.0                              # (2 + 4) / 2
    assert k.conversion_rate == 50.0                 # 1 conversion / 2 visits
    assert k.click_through_rate == 10.0              # 1 / 10 impressions
    assert k.open_rate == 25.0                       # 1 / 4 delivered
    assert (k.sessions, k.bounce_rate) == (2, 50.0)  # s1 had one page and no action
    assert k.pages_per_session == 2.5                # (1 + 3 + m1's 1) / 2 starts
    assert k.actions_per_session == 1.0              # (c6's 1 + m2's 1) / 2
    assert k.average_session_duration == 210.0       # (120 + 300) / 2
    assert (k.revenue, k.transactions, k.purchasers) == (80.0, 2, 1)
    assert k.customers_in_window == 6
    assert k.arpu == pytest.approx(80 / 6)
    assert k.average_transaction_value == 40.0
    assert k.purchase_frequency == 2.0
    assert k.customer_lifetime_value == pytest.approx(40.0 * 2.0 * 3.0)  # lifespan = 1 / (1/3)
    assert k.first_contact_resolution == 50.0
    assert k.average_handle_time == 900.0
    assert k.review_sentiment == 25.0                # (2 - 1) / 4
    assert k.social_sentiment == -100.0


def test_score_distribution_and_account_roll_up(population):
    k = population.kpis(NOW)
    assert k.scored_customers == 6                   # 4 members + m3 (left, event in window) + c6
    assert sum(k.tier_counts.values()) == 6
    c6 = population.customer("c6", NOW)
    # weights: session_start 1x2, page_view 1x4, action 2x1, conversion 5x1, purchase 5x2,
    # nps 2x3, csat 2x3, ces 1x2, ad_click 1x1, email_open 1x1, review 3x4, social_mention 2x1,
    # feature_used 3x1; ad_impression, email_delivered, tickets, session_end are unweighted
    assert c6.cer == 2 + 4 + 2 + 5 + 10 + 6 + 6 + 2 + 1 + 1 + 12 + 2 + 3
    m1 = population.customer("m1", NOW)
    assert m1.cer == 1 * 1 + 1 * 2                   # a page view and points earned
    acme = population.account("acme", NOW)
    assert acme.users == 2
    assert acme.cer == c6.cer + m1.cer
    assert acme.es == pytest.approx((c6.es + m1.es) / 2)
    assert {row.type: row.count for row in acme.breakdown}["page_view"] == 5
    assert population.account("nobody", NOW) is None
    assert k.mean_cer == pytest.approx(sum(population.customer(c, NOW).cer for c in
                                           ("m1", "m2", "m3", "m4", "m5", "c6")) / 6)


def test_breakdown_explains_the_score():
    config = CONFIG
    scorer = Scorer(config)
    for type_, n in [("follow", 10), ("like", 300), ("comment", 35), ("reach_out", 5), ("tag", 3), ("share", 1)]:
        scorer.process(ev("G", type_, NOW, count=n), NOW)
    card = scorer.customer("G", NOW)
    rows = {row.type: row for row in card.breakdown}
    assert sum(row.cer for row in card.breakdown) == card.cer == 416 + 3
    assert sum(row.es for row in card.breakdown) == pytest.approx(card.es)
    assert rows["like"].component == 100.0                   # 300 likes pass the default target of 75: capped
    assert rows["share"].component == pytest.approx(100 / 3)  # 1 of 3
    assert rows["purchase"].count == 0 and rows["purchase"].es == 0.0
    assert card.tier is formulas.tier(card.es)


def test_window_counts_match_a_brute_force_recount_of_accepted_events():
    """An independent recount of the accepted events gives every customer's CER exactly."""
    config = CONFIG
    scorer = Scorer(config, evaluate_alerts=False)
    traffic = TrafficGenerator(TrafficSettings(customers=80, accounts=8, seed=11))
    accepted = []
    last = DAY0
    for message in traffic.messages(6000, DAY0, 50 * DAY):
        result = scorer.process(message.value, message.at_ms)
        last = message.at_ms
        if result.outcome is Outcome.ACCEPTED:
            accepted.append(result.event)
    for as_of in (last, last + 5 * HOUR, last + 3 * DAY):
        first_day = as_of // DAY - 29
        expected: dict[str, int] = {}
        for e in accepted:
            if e.ts_ms // DAY >= first_day:
                expected[e.customer_id] = expected.get(e.customer_id, 0) + e.count * config.scoring.weights.get(e.type, 0)
        for customer_id in scorer.customers:
            assert scorer.customer(customer_id, as_of).cer == expected.get(customer_id, 0), customer_id


def test_generated_stream_outcomes_follow_the_kind_of_each_message():
    config = CONFIG
    scorer = Scorer(config)
    traffic = TrafficGenerator(TrafficSettings(customers=50, seed=3, malformed_share=0.02, late_share=0.02))
    outcomes = {kind: [] for kind in Kind}
    for message in traffic.messages(4000, DAY0, 20 * DAY):
        outcomes[message.kind].append(scorer.process(message.value, message.at_ms))
    assert outcomes[Kind.MALFORMED] and all(r.outcome is Outcome.REJECTED for r in outcomes[Kind.MALFORMED])
    assert all(r.outcome is Outcome.ACCEPTED for r in outcomes[Kind.VALID] + outcomes[Kind.DELAYED])
    assert outcomes[Kind.LATE] and all(r.reason is Reason.TS_TOO_LATE for r in outcomes[Kind.LATE])
    assert outcomes[Kind.DUPLICATE] and all(
        r.outcome is Outcome.DUPLICATE or r.reason is Reason.TS_TOO_LATE for r in outcomes[Kind.DUPLICATE]
    )
    reasons = {r.reason for r in outcomes[Kind.MALFORMED]}
    assert len(reasons) >= 5                         # the generator exercises many rejection paths


def test_memory_stays_bounded_by_the_retention():
    config = CONFIG
    scorer = Scorer(config, evaluate_alerts=False)
    traffic = TrafficGenerator(TrafficSettings(customers=20, seed=5, malformed_share=0, late_share=0))
    now = DAY0
    for message in traffic.messages(8000, DAY0, 120 * DAY):
        scorer.process(message.value, message.at_ms)
        now = message.at_ms
    scorer.sweep(now)
    oldest_allowed = bucket_of(now - config.retention_ms, config.scoring.bucket_ms)
    retention_buckets = config.retention_ms // config.scoring.bucket_ms + 1
    for state in scorer.customers.values():
        assert all(b > oldest_allowed for b in state.buckets)
        assert len(state.buckets) <= retention_buckets
        assert all(ts >= state.watermark_ms - config.time.dedup_horizon_ms for ts in state.seen.values())


def test_a_session_closes_a_lateness_after_its_newest_event_and_its_counts_stay():
    config = CONFIG                           # allowed lateness 1 day
    scorer = Scorer(config, evaluate_alerts=False)
    t = NOW - 5 * DAY
    for e in (ev("w", "session_start", t, session_id="s"), ev("w", "page_view", t + HOUR, session_id="s"),
              ev("w", "session_end", t + 2 * HOUR, session_id="s", value=60),
              ev("w", "session_start", t + 3 * HOUR, session_id="open")):
        scorer.process(e, NOW)
    state = scorer.customers["w"]
    assert set(state.sessions) == {"s", "open"}
    before = scorer.kpis(NOW)
    assert (before.sessions, before.bounce_rate) == (1, 100.0)      # one page, no action: a bounce

    scorer.process(ev("w", "like", t + 2 * HOUR + DAY), NOW)         # watermark: "s" still within the lateness
    assert set(state.sessions) == {"s", "open"}
    scorer.process(ev("w", "like", t + 2 * HOUR + DAY + 1), NOW)     # a lateness past its newest event
    assert set(state.sessions) == {"open"}                           # closed; "open" is 1 h newer
    after = scorer.kpis(NOW)
    assert (after.sessions, after.bounce_rate) == (1, 100.0)        # its counts stay in the buckets

    scorer.process(ev("w", "page_view", t + 2 * DAY, session_id="s"), NOW)
    assert state.sessions["s"].anchor_ms == t + 2 * DAY              # a later event starts a new session
    assert scorer.kpis(NOW).sessions == 1                            # not ended: not counted


def test_leaderboard_orders_by_score_then_cer_then_id():
    scorer = Scorer(CONFIG)
    scorer.process(ev("low", "like", NOW), NOW)
    scorer.process(ev("high", "purchase", NOW, value=10, count=3), NOW)
    scorer.process(ev("mid", "purchase", NOW, value=10), NOW)
    assert [c.customer_id for c in scorer.leaderboard(NOW, limit=3)] == ["high", "mid", "low"]
    assert [c.customer_id for c in scorer.leaderboard(NOW, limit=2, bottom=True)] == ["low", "mid"]


def test_decayed_score_is_a_recency_weighted_cer_over_the_window():
    config = load_config(overrides={"scoring": {"decay_half_life": "1d"}})
    scorer = Scorer(config, evaluate_alerts=False)
    noon = DAY0 + 12 * HOUR
    scorer.process(ev("d", "purchase", noon, value=1), noon)                       # weight 5
    scorer.process(ev("d", "purchase", noon + 2 * DAY, value=1), noon + 2 * DAY)
    card = scorer.customer("d", noon + 2 * DAY)
    # bucket midpoints are noon: ages 2 days and 0 -> 5 * 0.25 + 5 * 1
    assert card.decayed == 5 * 0.25 + 5 * 1.0
    assert card.decayed <= card.cer == 10
    # the window is buckets day 3..32 at day 32: both purchases are out, nothing decays from outside
    assert scorer.customer("d", noon + 31 * DAY).decayed == 5 * 0.5 ** 29   # day 2 still in (days 2..31)
    assert scorer.customer("d", noon + 32 * DAY).decayed == 0.0


def test_interaction_totals_and_visit_frequency_hand_worked():
    scorer = Scorer(load_config())
    events = [
        ev("a", "like", NOW - 1 * HOUR, count=3),
        ev("a", "share", NOW - 2 * HOUR),
        ev("a", "session_start", NOW - 3 * HOUR, session_id="s1"),
        ev("b", "comment", NOW - 1 * HOUR, count=2),
        ev("b", "follow", NOW - 1 * DAY),
        ev("b", "like", NOW - 2 * DAY),
        ev("b", "session_start", NOW - 2 * HOUR, session_id="s2"),
        ev("b", "session_start", NOW - 1 * DAY, session_id="s3"),
        ev("c", "ad_impression", NOW - 1 * HOUR, count=5),
        ev("c", "ad_click", NOW - 2 * HOUR, count=2),
        ev("c", "session_start", NOW - 4 * HOUR, session_id="s4"),
    ]
    for event in sorted(events, key=lambda e: e["ts"]):   # in time order: late events are a gate of their own
        assert scorer.process(event, NOW).outcome is Outcome.ACCEPTED, event
    k = scorer.kpis(NOW)
    assert (k.likes, k.shares, k.comments, k.follows) == (4, 1, 2, 1)   # a's 3 + b's 1 likes
    assert (k.impressions, k.clicks) == (5, 2)
    assert k.click_through_rate == 40.0                                 # 2 / 5, from the same totals
    assert k.customers_in_window == 3
    assert k.visit_frequency == pytest.approx(4 / 3)                    # 4 sessions started / a, b, c


def test_sessions_activation_abandonment_and_bounce_partition_ended_sessions():
    scorer = Scorer(load_config())
    events = [
        # s1: one page, no action: a bounce
        ev("a", "session_start", NOW - 5 * HOUR, session_id="s1"),
        ev("a", "page_view", NOW - 5 * HOUR, session_id="s1"),
        ev("a", "session_end", NOW - 5 * HOUR + 60_000, session_id="s1", value=60),
        # s2: three pages, no action: abandoned
        ev("a", "session_start", NOW - 4 * HOUR, session_id="s2"),
        ev("a", "page_view", NOW - 4 * HOUR, session_id="s2", count=3),
        ev("a", "session_end", NOW - 4 * HOUR + 60_000, session_id="s2", value=60),
        # s3: one page and an action: activated (not a bounce)
        ev("b", "session_start", NOW - 3 * HOUR, session_id="s3"),
        ev("b", "page_view", NOW - 3 * HOUR, session_id="s3"),
        ev("b", "action", NOW - 3 * HOUR, session_id="s3"),
        ev("b", "session_end", NOW - 3 * HOUR + 60_000, session_id="s3", value=60),
        # s4: two pages, then (below, late) an action: abandoned until the action arrives
        ev("b", "session_start", NOW - 2 * HOUR, session_id="s4"),
        ev("b", "page_view", NOW - 2 * HOUR, session_id="s4", count=2),
        ev("b", "session_end", NOW - 2 * HOUR + 60_000, session_id="s4", value=60),
        # s5: still open: not counted anywhere
        ev("c", "session_start", NOW - 1 * HOUR, session_id="s5"),
        ev("c", "action", NOW - 1 * HOUR, session_id="s5"),
    ]
    for event in events:
        assert scorer.process(event, NOW).outcome is Outcome.ACCEPTED, event
    k = scorer.kpis(NOW)
    assert k.sessions == 4
    assert (k.bounce_rate, k.activation_rate, k.abandonment_rate) == (25.0, 25.0, 50.0)   # s1; s3; s2, s4
    late = ev("b", "action", NOW - 2 * HOUR + 30_000, session_id="s4")
    assert scorer.process(late, NOW).outcome is Outcome.ACCEPTED
    k = scorer.kpis(NOW)
    assert (k.bounce_rate, k.activation_rate, k.abandonment_rate) == (25.0, 50.0, 25.0)   # s4 moved over


def test_csat_across_channels_hand_worked():
    scorer = Scorer(load_config())          # channels: web, app, email, phone, chat, social, in_store
    events = [
        ev("a", "like", NOW - 1 * HOUR, channel="web", count=5),
        ev("a", "csat_response", NOW - 1 * HOUR, channel="web", value=5),
        ev("a", "csat_response", NOW - 2 * HOUR, channel="web", value=2),
        ev("b", "page_view", NOW - 1 * HOUR, channel="phone"),
        ev("b", "csat_response", NOW - 3 * HOUR, channel="phone", value=4),
        ev("c", "comment", NOW - 1 * HOUR, channel="kiosk", count=2),          # not allowed: "other"
        ev("c", "csat_response", NOW - 2 * HOUR, value=1),                     # no channel: overall CSAT only
        ev("c", "ad_impression", NOW - 2 * HOUR, channel="web", count=50),     # passive: not an interaction
    ]
    for event in sorted(events, key=lambda e: e["ts"]):
        assert scorer.process(event, NOW).outcome is Outcome.ACCEPTED, event
    k = scorer.kpis(NOW)
    assert k.channel_interactions["web"] == 7 and k.channel_interactions["phone"] == 2    # the answers count too
    assert k.channel_interactions["other"] == 2 and "kiosk" not in k.channel_interactions
    assert (k.csat_by_channel["web"], k.csat_by_channel["phone"], k.csat_by_channel["other"]) == (50.0, 100.0, 0.0)
    assert k.csat_overall == pytest.approx((50 * 7 + 100 * 2) / 9)         # "other" has no answers: left out
    assert k.csat == 50.0                                                  # 5 and 4 of 5, 2, 4, 1


def test_scans_brand_searches_and_share_of_voice_hand_worked():
    config = load_config(overrides={"kpis": {"scan_locations": ["expo_berlin"]}})
    scorer = Scorer(config)
    events = [
        ev("a", "scan", NOW - 1 * HOUR, device="ios", location="expo_berlin"),
        ev("a", "scan", NOW - 2 * HOUR, device="watch", location="expo_austin", count=2),
        ev("b", "scan", NOW - 3 * HOUR),
        ev("a", "brand_search", NOW - 1 * HOUR, count=3),
        ev("b", "competitor_search", NOW - 1 * HOUR, count=9),
        ev("b", "like", NOW - 2 * HOUR, count=6),
        ev("b", "email_delivered", NOW - 2 * HOUR, count=40),
    ]
    for event in sorted(events, key=lambda e: e["ts"]):
        assert scorer.process(event, NOW).outcome is Outcome.ACCEPTED, event
    k = scorer.kpis(NOW)
    assert k.scans == 4
    assert k.scans_by_device == {"ios": 1, "android": 0, "desktop": 0, "other": 2, "unknown": 1}
    assert k.scans_by_location == {"expo_berlin": 1, "other": 2, "unknown": 1}
    assert (k.brand_searches, k.competitor_searches) == (3, 9)
    assert k.share_of_voice == pytest.approx(25.0)                        # 3 / (3 + 9)
    assert k.customer_interactions == 4 + 3 + 6                           # scans, brand searches, likes
    assert k.brand_search_rate == pytest.approx(100 * 3 / 13)
