"""Alert rules: each fires on its condition, stays quiet otherwise, and does not re-fire until cleared."""

from __future__ import annotations

from scoring.alerts import Rule, RuleState, evaluate, view
from scoring.config import default_mapping, load_config
from scoring.engine import Scorer
from scoring.explain import explain
from scoring.timeutil import DAY, HOUR
from tests.builders import DAY0, ev


def likes_only(**sections):
    """ES = 10 x likes in a 3-day window: 8 likes excellent, 6 moderate, fewer low."""
    weights = {name: 0 for name in default_mapping()["weights"]}
    weights["like"] = 1
    overrides = {"weights": weights, "targets": {"like": 10}, "scoring": {"window": "3d"}}
    for key, value in sections.items():
        overrides.setdefault(key, {}).update(value)
    return load_config(overrides=overrides)


def rules(result_or_alerts):
    alerts = getattr(result_or_alerts, "alerts", result_or_alerts)
    return [a.rule for a in alerts]


def test_tier_downgrade_fires_once_per_episode_and_rearms_after_recovery():
    scorer = Scorer(likes_only(alerts={"score_drop_percent": 0, "inactivity": "off", "activation": "off"}))
    t = DAY0 + 12 * HOUR
    assert rules(scorer.process(ev("c", "like", t, count=9), t)) == []           # ES 90, first view
    # three days on, the 9 likes aged out; 7 new likes -> ES 70 (moderate): a downgrade
    t3 = t + 3 * DAY
    result = scorer.process(ev("c", "like", t3, count=7), t3)
    assert rules(result) == [Rule.TIER_DOWNGRADE]
    alert = result.alerts[0]
    assert alert.before["tier"] == "excellent" and alert.after["tier"] == "moderate"
    assert alert.customer_id == "c" and {"type": "like", "count": 7} .items() <= alert.breakdown[
        [row["type"] for row in alert.breakdown].index("like")].items()
    # still moderate: no re-fire
    assert rules(scorer.process(ev("c", "comment", t3 + HOUR), t3 + HOUR)) == []
    # further drop to low in the same episode: fires again (a new, worse condition)
    t6 = t3 + 3 * DAY
    assert rules(scorer.process(ev("c", "like", t6, count=2), t6)) == [Rule.TIER_DOWNGRADE]
    # recovers to excellent (the episode's baseline): re-armed, quiet
    assert rules(scorer.process(ev("c", "like", t6 + HOUR, count=8), t6 + HOUR)) == []
    assert scorer.alert_states["c"][Rule.TIER_DOWNGRADE] == RuleState()
    # a later downgrade is a new episode
    t9 = t6 + 3 * DAY
    assert rules(scorer.process(ev("c", "like", t9, count=6), t9)) == [Rule.TIER_DOWNGRADE]


def test_a_downgrade_by_ageing_alone_is_caught_by_the_sweep():
    scorer = Scorer(likes_only(alerts={"score_drop_percent": 0, "inactivity": "off", "activation": "off"}))
    t = DAY0 + 12 * HOUR
    scorer.process(ev("c", "like", t, count=9), t)
    assert rules(scorer.sweep(t + DAY)) == []                                    # still in the window
    assert rules(scorer.sweep(t + 3 * DAY)) == [Rule.TIER_DOWNGRADE]             # aged out: ES 0
    assert rules(scorer.sweep(t + 4 * DAY)) == []                                # no repeat


def test_score_drop_fires_above_the_threshold_only_and_clears():
    config = likes_only(
        scoring={"window": "7d"},
        alerts={"tier_downgrade": False, "score_drop_percent": 20, "score_drop_window": "1d",
                "score_drop_min_reference": 10, "inactivity": "off", "activation": "off"},
    )
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("c", "like", t, count=5), t)                               # ES 50
    scorer.process(ev("c", "like", t + 1 * DAY, count=1), t + 1 * DAY)         # ES 60: no drop
    # 7 days after the first likes, they leave the window: ES 10 vs 60 a day ago -> drop 83 %
    later = t + 7 * DAY
    fired = scorer.sweep(later)
    assert rules(fired) == [Rule.SCORE_DROP]
    assert fired[0].before["es"] == 60.0 and fired[0].after["es"] == 10.0
    assert rules(scorer.sweep(later + HOUR)) == []                               # active: no re-fire
    # a day later the last like has aged out too (ES 0 vs 10): still one episode, no new alert
    assert rules(scorer.sweep(later + DAY)) == []
    assert scorer.alert_states["c"][Rule.SCORE_DROP].active is True
    # another day and the reference (ES 0) is below score_drop_min_reference: the rule clears
    scorer.sweep(later + 2 * DAY)
    assert scorer.alert_states["c"][Rule.SCORE_DROP].active is False


def test_score_drop_of_exactly_the_threshold_does_not_fire():
    config = likes_only(
        scoring={"window": "7d"},
        alerts={"tier_downgrade": False, "score_drop_percent": 20, "score_drop_window": "1d",
                "score_drop_min_reference": 10, "inactivity": "off", "activation": "off"},
    )
    t = DAY0 + 12 * HOUR
    for later_likes, expected in ((4, []), (3, [Rule.SCORE_DROP])):
        scorer = Scorer(config)
        scorer.process(ev("c", "like", t, count=1), t)
        scorer.process(ev("c", "like", t + DAY, count=later_likes), t + DAY)
        # day 7: the first like left the window; reference (day 6) is 10 * (1 + later_likes)
        state = scorer.customers["c"]
        current = view(state, t + 7 * DAY, config)
        assert current.es_reference == 10.0 * (1 + later_likes)
        alerts, _ = evaluate(None, current, {}, config)
        assert rules(alerts) == expected  # 50 -> 40 is exactly 20 %: quiet; 40 -> 30 is 25 %: fires


def test_inactivity_fires_after_the_configured_days_and_clears_on_activity():
    config = load_config(overrides={"alerts": {"inactivity": "14d", "activation": "off",
                                               "tier_downgrade": False, "score_drop_percent": 0}})
    scorer = Scorer(config)
    t = DAY0
    scorer.process(ev("m", "member_joined", t), t)
    scorer.process(ev("m", "like", t + HOUR), t + HOUR)
    assert rules(scorer.sweep(t + HOUR + 14 * DAY - 1)) == []                   # 1 ms short
    fired = scorer.sweep(t + HOUR + 14 * DAY)
    assert rules(fired) == [Rule.INACTIVE]
    assert rules(scorer.sweep(t + 20 * DAY)) == []                              # still inactive: quiet
    scorer.process(ev("m", "like", t + 21 * DAY), t + 21 * DAY)                 # active again: clears
    assert scorer.alert_states["m"][Rule.INACTIVE].active is False
    assert rules(scorer.sweep(t + 21 * DAY + 14 * DAY)) == [Rule.INACTIVE]      # a new episode


def test_non_members_are_never_inactive():
    config = load_config(overrides={"alerts": {"inactivity": "1d", "activation": "off"}})
    scorer = Scorer(config)
    scorer.process(ev("visitor", "page_view", DAY0), DAY0)
    assert Rule.INACTIVE not in rules(scorer.sweep(DAY0 + 10 * DAY))


def test_not_activated_fires_once_per_membership():
    config = load_config(overrides={"alerts": {"inactivity": "off", "activation": "7d",
                                               "tier_downgrade": False, "score_drop_percent": 0}})
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("new", "member_joined", t), t)
    scorer.process(ev("eager", "member_joined", t), t)
    scorer.process(ev("eager", "page_view", t + DAY), t + DAY)
    assert rules(scorer.sweep(t + 7 * DAY - 1)) == []
    fired = scorer.sweep(t + 7 * DAY)
    assert [(a.rule, a.customer_id) for a in fired] == [(Rule.NOT_ACTIVATED, "new")]
    assert rules(scorer.sweep(t + 8 * DAY)) == []
    # leaves and joins again: a new membership can fire again
    scorer.process(ev("new", "member_left", t + 9 * DAY), t + 9 * DAY)
    scorer.process(ev("new", "member_joined", t + 10 * DAY), t + 10 * DAY)
    assert rules(scorer.sweep(t + 17 * DAY)) == [Rule.NOT_ACTIVATED]


def test_disabled_rules_never_fire():
    config = likes_only(alerts={"tier_downgrade": False, "score_drop_percent": 0,
                                "inactivity": "off", "activation": "off"})
    scorer = Scorer(config)
    t = DAY0
    scorer.process(ev("c", "member_joined", t), t)
    scorer.process(ev("c", "like", t, count=9), t)
    assert scorer.sweep(t + 60 * DAY) == []


def test_long_standing_members_are_not_reported_as_not_activated():
    """A membership older than the retention horizon has no buckets left to show activation."""
    config = load_config(overrides={"alerts": {"inactivity": "off", "activation": "7d"}})
    scorer = Scorer(config)
    now = DAY0 + 90 * DAY
    fired = []
    for event in (ev("veteran", "member_joined", now - 60 * DAY), ev("veteran", "like", now - HOUR),
                  ev("recent", "member_joined", now - 10 * DAY)):
        fired += scorer.process(event, now).alerts
    fired += scorer.sweep(now + HOUR)
    assert [(a.rule, a.customer_id) for a in fired] == [(Rule.NOT_ACTIVATED, "recent")]


def test_an_alert_explains_itself_hand_worked():
    """ES = (10 x likes + 10 x comments, each capped at 100) / 2 over a 3-day window, compared with
    the window 2 days earlier."""
    config = likes_only(weights={"comment": 1}, targets={"comment": 10},
                        alerts={"score_drop_percent": 0, "score_drop_window": "2d", "inactivity": "off",
                                "activation": "off"})
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("c", "like", t, count=8, account_id="acme"), t)      # ES (80 + 0) / 2
    scorer.process(ev("c", "comment", t, count=4), t)                      # ES (80 + 40) / 2 = 60
    scorer.process(ev("c", "like", t + DAY, count=2), t + DAY)             # 10 likes: ES 70, moderate
    # day 3: day 0 left the window (likes 2, comments 0: ES 10, low); an NPS answer of 4 arrives
    result = scorer.process(ev("c", "nps_response", t + 3 * DAY, value=4), t + 3 * DAY)
    [alert] = result.alerts
    assert alert.rule is Rule.TIER_DOWNGRADE
    assert alert.before == {"tier": "moderate", "es": 70.0} and alert.after == {"tier": "low", "es": 10.0}
    why = alert.why
    assert why.sentence == ("ES 70.0 → 10.0 (moderate → low) over 2 days: likes −80 %, comments −100 %, NPS 4")
    assert (why.es_before, why.tier_before.value, why.es_now, why.tier_now.value) == (70.0, "moderate", 10.0, "low")
    assert [(d.type, d.before, d.now, d.es_points_before, d.es_points_now) for d in why.drivers] == [
        ("like", 10, 2, 50.0, 10.0), ("comment", 4, 0, 20.0, 0.0)]          # the biggest loss of ES points first
    assert why.since_ms == t + DAY and why.nps == 4.0 and why.csat is None and why.quiet_days is None
    assert alert.to_dict()["why"] == why.to_dict() and why.to_dict()["drivers"][0]["change_percent"] == -80.0


def test_an_explanation_names_a_long_silence_and_an_unhappy_answer():
    config = likes_only(alerts={"score_drop_percent": 0, "inactivity": "off", "activation": "off"})
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("q", "member_joined", t), t)
    scorer.process(ev("q", "csat_response", t + HOUR, value=2), t + HOUR)      # csat is an activity type too
    soon = explain(scorer.customers["q"], t + HOUR + DAY, config)           # the answer is in the 3-day window
    assert (soon.csat, soon.quiet_days) == (2.0, None) and soon.sentence.endswith(": CSAT 2/5")
    later = explain(scorer.customers["q"], t + HOUR + 9 * DAY, config)      # out of it; 9 days quiet
    assert (later.csat, later.quiet_days, later.drivers) == (None, 9, ())
    assert later.sentence.endswith(": no activity for 9 days")
    quiet = Scorer(config)
    quiet.process(ev("n", "member_joined", t), t)
    assert explain(quiet.customers["n"], t + 12 * DAY, config).sentence == (
        "ES 0.0 → 0.0 (still low) over 7 days: never active since joining 12 days ago")


def test_an_inactivity_alert_says_how_long_the_customer_has_been_silent_and_what_it_did_before_hand_worked():
    """ES = 10 x likes over a 3-day window. A member likes 8 times and views 3 pages on day 0, then
    nothing: 14 days later the inactivity alert speaks of the silence, not of scores that moved."""
    config = likes_only(alerts={"score_drop_percent": 0, "tier_downgrade": False, "inactivity": "14d",
                                "activation": "off"})
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("s", "member_joined", t), t)
    scorer.process(ev("s", "like", t + HOUR, count=8), t + HOUR)
    scorer.process(ev("s", "page_view", t + 2 * HOUR, count=3), t + 2 * HOUR)
    [alert] = scorer.sweep(t + 2 * HOUR + 14 * DAY)
    why = alert.why
    assert alert.rule is Rule.INACTIVE
    assert why.sentence == ("No activity for 14 days (last active 2026-09-21); in the 3 days before: "
                            "8 likes, 3 page views; ES 0.0 (low)")
    assert (why.since_ms, why.quiet_days, why.es_before, why.tier_before.value) == (t + 2 * HOUR, 14, 80.0, "excellent")
    assert [(d.type, d.before, d.now, d.es_points_before, d.es_points_now) for d in why.drivers] == [
        ("like", 8, 0, 80.0, 0.0), ("page_view", 3, 0, 0.0, 0.0)]
    assert alert.to_dict()["why"] == why.to_dict()


def test_an_activation_alert_says_the_member_was_never_active_since_joining():
    config = likes_only(alerts={"score_drop_percent": 0, "tier_downgrade": False, "inactivity": "off",
                                "activation": "7d"})
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("n", "member_joined", t), t)
    [alert] = scorer.sweep(t + 7 * DAY)
    assert alert.rule is Rule.NOT_ACTIVATED
    assert alert.why.sentence == "Never active since joining 7 days ago (2026-09-21); ES 0.0 (low)"
    assert (alert.why.drivers, alert.why.quiet_days, alert.why.since_ms) == ((), 7, t)


def test_an_alert_whose_condition_began_before_max_age_is_recorded_not_sent():
    """History backfilled today: a member who joined 40 days ago is found inactive at once, its
    inactivity having begun 26 days ago (14 days after joining); with alerts.max_age 7 days the alert
    is recorded (the rule's memory: it does not fire again when its like of 30 days ago arrives, nor
    on the next sweep) and not sent. With max_age off it is sent."""
    def backfill(max_age: str, last_active_days: int) -> Scorer:
        config = load_config(overrides={"alerts": {"inactivity": "14d", "activation": "off", "max_age": max_age,
                                                   "tier_downgrade": False, "score_drop_percent": 0}})
        scorer = Scorer(config)
        now = DAY0 + 60 * DAY
        scorer.process(ev("m", "member_joined", now - 40 * DAY), now)
        scorer.process(ev("m", "like", now - last_active_days * DAY), now)
        return scorer

    stale = backfill("7d", 30)
    assert [(a.rule, a.began_ms) for a in stale.stale_alerts] == [(Rule.INACTIVE, DAY0 + 60 * DAY - 26 * DAY)]
    assert stale.alert_states["m"][Rule.INACTIVE].active                   # recorded: the episode is known
    assert rules(stale.sweep(DAY0 + 61 * DAY)) == [] and len(stale.stale_alerts) == 1
    sent = backfill("off", 30)
    assert sent.stale_alerts == [] and sent.alert_states["m"][Rule.INACTIVE].active


def test_a_score_alert_is_stale_when_the_events_that_moved_the_score_are_older_than_max_age():
    """9 likes 10 days ago (excellent then); today an event arrives and the tier is evaluated: it fell.
    The alert began at the newest event that moved the score: sent when that event is an hour old,
    recorded and not sent when it is 9 days old (a backfill), with alerts.max_age 2 days."""
    config = likes_only(alerts={"score_drop_percent": 0, "inactivity": "off", "activation": "off",
                                "max_age": "2d"})
    now = DAY0 + 30 * DAY
    for age, stale in ((9 * DAY, True), (HOUR, False)):
        scorer = Scorer(config)
        scorer.process(ev("c", "like", now - 10 * DAY, count=9), now - 10 * DAY)
        result = scorer.process(ev("c", "like", now - age), now)
        fired = [*result.alerts, *scorer.stale_alerts]
        assert rules(fired) == [Rule.TIER_DOWNGRADE] and fired[0].began_ms == now - age
        assert bool(scorer.stale_alerts) is stale and bool(result.alerts) is not stale
