"""Segment scorecards (docs/scores-and-kpis.md): a customer is scored by the scorecard of its newest
segment, customers without one by the default; hand-worked."""

from __future__ import annotations

import pytest

from scoring.config import ConfigError, config_mapping, build_config, default_mapping, load_config
from scoring.engine import Scorer
from scoring.explain import explain
from scoring.history import customer_history
from scoring.standing import ranked_segments, standing
from scoring.timeutil import HOUR
from tests.builders import NOW, ev


def two_types(**more):
    """Default scorecard: ES = (10 x likes + 10 x comments, each capped at 100) / 2; tiers 80 / 60.
    Enterprise: likes do not count, comments weigh 2 (ES = 10 x comments), tiers 90 / 50."""
    weights = {name: 0 for name in default_mapping()["weights"]}
    weights.update(like=1, comment=1)
    return load_config(overrides={
        "weights": weights, "targets": {"like": 10, "comment": 10},
        "scorecards": {"enterprise": {"weights": {"like": 0, "comment": 2},
                                      "tiers": {"excellent": 90, "moderate": 50}}}, **more})


def test_a_customer_is_scored_by_its_newest_segments_scorecard():
    config = two_types()
    scorer = Scorer(config)
    for cid, segment in (("d", None), ("e", "enterprise")):
        scorer.process(ev(cid, "like", NOW - 2 * HOUR, count=8, **({"segment": segment} if segment else {})), NOW)
        scorer.process(ev(cid, "comment", NOW - HOUR, count=4), NOW)
    d, e = scorer.customer("d", NOW), scorer.customer("e", NOW)
    assert (d.es, d.tier.value, d.cer) == (60.0, "moderate", 12)         # (80 + 40) / 2
    assert (e.es, e.tier.value, e.cer) == (40.0, "low", 8)               # 10 x 4 comments; CER 2 x 4
    assert [(r.type, r.weight) for r in e.breakdown] == [("comment", 2)]
    # a newer event naming another segment (without a scorecard): the default again
    scorer.process(ev("e", "share", NOW - HOUR // 2, segment="smb"), NOW)
    assert (scorer.customer("e", NOW).es, scorer.customer("e", NOW).tier.value) == (60.0, "moderate")


def test_kpis_alerts_history_and_standings_follow_the_scorecard():
    config = two_types()
    scorer = Scorer(config)
    scorer.process(ev("e", "like", NOW - 3 * HOUR, count=8), NOW)
    scorer.process(ev("e", "comment", NOW - 3 * HOUR, count=4), NOW)          # default: 60, moderate
    result = scorer.process(ev("e", "share", NOW - 2 * HOUR, segment="enterprise"), NOW)
    [alert] = result.alerts                                                  # enterprise: 40, low
    assert (alert.rule.value, alert.before["tier"], alert.after["tier"]) == ("tier_downgrade", "moderate", "low")
    assert scorer.kpis(NOW).tier_counts == {"low": 1, "moderate": 0, "excellent": 0}
    state = scorer.customers["e"]
    assert customer_history(state, NOW, config).points[-1].es == 40.0
    assert explain(state, NOW, config).es_now == 40.0
    ranked = standing(state, scorer.alert_states["e"], NOW, config)
    assert ranked.segment == "enterprise" and ranked.tier.value == "low"
    assert ranked_segments(config) == {"enterprise"}
    assert [c.customer_id for c in scorer.leaderboard(NOW, segment="enterprise")] == ["e"]
    assert scorer.leaderboard(NOW, segment="smb") == []


def test_segments_listed_for_metrics_get_leaderboards_too_and_the_config_round_trips():
    config = two_types(kpis={"segments": ["smb"]})
    assert ranked_segments(config) == {"enterprise", "smb"}
    assert build_config(config_mapping(config)) == config
    assert config_mapping(config)["scorecards"]["enterprise"]["tiers"] == {"excellent": 90.0, "moderate": 50.0}


@pytest.mark.parametrize(("scorecards", "key"), [
    ({"enterprise": {"weights": {"teleport": 2}}}, "scorecards.enterprise.weights.teleport"),
    ({"enterprise": {"weights": {"like": 0, "comment": 0}}}, "scorecards.enterprise.weights"),
    ({"enterprise": {"weights": {"brand_search": 3}}}, "scorecards.enterprise.targets.brand_search"),
    ({"enterprise": {"tiers": {"excellent": 40}}}, "scorecards.enterprise.tiers.moderate"),
    ({"enterprise": {"bonus": {}}}, "scorecards.enterprise.bonus"),
])
def test_a_bad_scorecard_names_its_key(scorecards, key):
    with pytest.raises(ConfigError) as info:
        two_types(scorecards=scorecards)
    assert info.value.key == key
