"""Scorecards of measures (docs/scorecards.md): penalties, averages of a value, ES their weighted
mean with the weighted counts; hand-worked."""

from __future__ import annotations

import math
import random

import pytest

from scoring import formulas
from scoring.config import ConfigError, build_config, config_mapping, default_mapping, load_config
from scoring.engine import Scorer
from scoring.explain import explain
from scoring.history import customer_history
from scoring.measures import engagement
from scoring.timeutil import DAY, HOUR
from tests.builders import CONFIG, NOW, ev

TICKETS = {"kind": "penalty", "type": "ticket_opened", "weight": 1, "target": 4}
NPS = {"kind": "average", "type": "nps_response", "weight": 2, "linear": [0, 10]}


def likes_and(measures: dict, **more) -> object:
    """Likes weigh 1 with a target of 10 (5 likes: m = 50) over a 3-day window, beside `measures`."""
    weights = {name: 0 for name in default_mapping()["weights"]}
    weights["like"] = 1
    return load_config(overrides={"weights": weights, "targets": {"like": 10}, "scoring": {"window": "3d"},
                                  "measures": measures, **more})


def scored(config, *events):
    scorer = Scorer(config)
    for event in events:
        scorer.process(event, NOW)
    return scorer


def card(config, *events, customer="c"):
    return scored(config, *events).customer(customer, NOW)


def likes(n: int, customer: str = "c") -> dict:
    return ev(customer, "like", NOW - 3 * HOUR, count=n)


def nps(value: int, hours_ago: int = 2, customer: str = "c") -> dict:
    return ev(customer, "nps_response", NOW - hours_ago * HOUR, value=value)


@pytest.mark.parametrize(("tickets", "penalty"), [(0, 100.0), (1, 75.0), (2, 50.0), (4, 0.0), (7, 0.0)])
def test_a_penalty_scores_100_at_none_and_0_at_its_target(tickets, penalty):
    config = likes_and({"tickets": TICKETS})
    events = [likes(5)] + ([ev("c", "ticket_opened", NOW - HOUR, count=tickets)] if tickets else [])
    c = card(config, *events)
    assert c.es == (50 + penalty) / 2            # weights 1 and 1
    assert c.cer == 5                             # CER counts only the weighted counts
    [m] = c.measures
    assert (m.name, m.kind, m.reading, m.score, m.es) == ("tickets", "penalty", tickets, penalty, penalty / 2)


def test_an_average_maps_the_windows_mean_value_linearly():
    config = likes_and({"nps": NPS})
    c = card(config, likes(5), nps(9), nps(6))   # mean 7.5 -> 75
    assert c.es == pytest.approx((50 + 2 * 75) / 3, abs=1e-12)
    [m] = c.measures
    assert (m.reading, m.score, m.weight) == (7.5, 75.0, 2)
    assert sum(t.es for t in c.breakdown) + m.es == pytest.approx(c.es, abs=1e-12)
    assert [t.es for t in c.breakdown] == [pytest.approx(50 / 3)]


def test_without_an_answer_an_average_is_left_out_or_scores_its_missing_value():
    assert card(likes_and({"nps": NPS}), likes(5)).es == 50.0                 # skipped: likes alone
    [m] = card(likes_and({"nps": NPS}), likes(5)).measures
    assert (m.reading, m.score, m.es) == (None, None, 0.0)
    with_missing = likes_and({"nps": {**NPS, "missing": 40}})
    assert card(with_missing, likes(5)).es == pytest.approx((50 + 2 * 40) / 3, abs=1e-12)


def test_answers_that_left_the_window_no_longer_count():
    config = likes_and({"nps": NPS})
    c = card(config, likes(5), nps(2, hours_ago=4 * 24), nps(8))    # the 2 is older than the 3-day window
    assert c.measures[0].reading == 8.0 and c.es == pytest.approx((50 + 2 * 80) / 3, abs=1e-12)


@pytest.mark.parametrize(("answers", "score"), [((0,), 0.0), ((6,), 0.0), ((7,), 50.0), ((8,), 50.0), ((9,), 100.0),
                                                ((10,), 100.0), ((9, 6), 50.0)])   # mean 7.5
def test_ranges_score_each_mean_from_its_lower_bound_up(answers, score):
    config = likes_and({"nps": {**{k: v for k, v in NPS.items() if k != "linear"},
                                "ranges": [[0, 0], [7, 50], [9, 100]]}})
    assert card(config, likes(5), *(nps(a) for a in answers)).measures[0].score == score


def test_less_can_be_better_with_the_bounds_reversed():
    """Average handle time: 60 s or less scores 100, 600 s or more 0."""
    config = likes_and({"handle": {"kind": "average", "type": "ticket_resolved", "weight": 1, "linear": [600, 60]}})
    for seconds, score in ((30, 100.0), (60, 100.0), (330, 50.0), (600, 0.0), (900, 0.0)):
        c = card(config, likes(5), ev("c", "ticket_resolved", NOW - HOUR, value=seconds, first_contact=True))
        assert c.measures[0].score == score and c.es == (50 + score) / 2


def test_with_no_measure_es_is_the_seed_formula_bit_for_bit():
    rng = random.Random(7)
    card_ = CONFIG.scoring
    assert card_.measures == ()
    for _ in range(500):
        counts = {t: rng.randrange(0, 40) for t in rng.sample(sorted(CONFIG.known_types), 8)}
        assert engagement(counts, {}, card_) == formulas.engagement_score(counts, card_.weights, card_.targets)


def test_the_breakdown_and_measures_add_up_to_es_and_serialise():
    config = likes_and({"nps": NPS, "tickets": TICKETS})
    c = card(config, likes(5), nps(9), nps(6), ev("c", "ticket_opened", NOW - HOUR))   # 50, 75, 75 by 1, 2, 1
    assert c.es == pytest.approx((50 + 2 * 75 + 75) / 4, abs=1e-12)
    assert math.fsum([*(t.es for t in c.breakdown), *(m.es for m in c.measures)]) == pytest.approx(c.es, abs=1e-12)
    body = c.to_dict()
    assert [m["name"] for m in body["measures"]] == ["nps", "tickets"]
    assert body["measures"][0] == {"name": "nps", "kind": "average", "type": "nps_response", "reading": 7.5,
                                   "weight": 2, "score": 75.0, "es": 37.5}


def test_history_explanations_and_alerts_follow_the_measures():
    config = likes_and({"nps": NPS}, alerts={"score_drop_percent": 20, "score_drop_window": "1d"})
    scorer = Scorer(config)
    then = NOW - 2 * DAY + 4 * HOUR
    scorer.process(ev("c", "like", NOW - 2 * DAY, count=10), then)
    scorer.process(ev("c", "nps_response", NOW - 2 * DAY, value=10), then)
    assert scorer.customer("c", then).es == 100.0                    # 10 likes: 100; NPS 10: 100
    result = scorer.process(nps(0), NOW)                              # mean 5 -> 50: ES (100 + 2 x 50) / 3
    now = scorer.customer("c", NOW)
    assert now.es == pytest.approx(200 / 3, abs=1e-12)
    points = customer_history(scorer.customers["c"], NOW, config).points
    assert points[-1].es == pytest.approx(now.es, abs=1e-12)
    assert points[-3].es == 100.0                                     # two days ago: before the 0
    why = explain(scorer.customers["c"], NOW, config)
    [driver] = why.drivers
    assert (driver.type, driver.measure, driver.before, driver.now) == ("nps", "average", 10.0, 5.0)
    assert "nps 10 → 5" in why.sentence
    [drop] = [a for a in result.alerts if a.rule.value == "score_drop"]
    assert [m["name"] for m in drop.to_dict()["measures"]] == ["nps"]
    assert drop.to_dict()["measures"][0]["score"] == 50.0


def test_a_segments_scorecard_adds_replaces_or_drops_measures_and_the_config_round_trips():
    config = likes_and({"nps": NPS}, scorecards={
        "enterprise": {"measures": {"nps": {**NPS, "weight": 0}, "tickets": TICKETS}},
        "smb": {"measures": {"nps": {**NPS, "linear": [5, 10]}}}})
    assert [m.name for m in config.scorecards["enterprise"].measures] == ["tickets"]
    assert config.scorecards["smb"].measures[0].linear == (5.0, 10.0)
    assert build_config(config_mapping(config)) == config
    e = card(config, ev("c", "like", NOW - 3 * HOUR, count=5, segment="enterprise"), nps(0))
    assert e.es == (50 + 100) / 2                                     # nps dropped, no ticket: 100
    s = card(config, ev("c", "like", NOW - 3 * HOUR, count=5, segment="smb"), nps(5))
    assert s.es == pytest.approx(50 / 3, abs=1e-12)                   # mean 5 -> 0 on [5, 10]


def test_an_account_rolls_up_its_users_measures():
    config = likes_and({"nps": NPS})
    scorer = scored(config, ev("a", "like", NOW - HOUR, count=5, account_id="acme"), nps(10, customer="a"),
                    ev("b", "like", NOW - HOUR, count=5, account_id="acme"))
    account = scorer.account("acme", NOW)
    assert account.es == formulas.mean([scorer.customer("a", NOW).es, scorer.customer("b", NOW).es])
    [m] = account.measures
    assert (m.reading, m.score) == (10.0, 100.0)                      # b has no answer: not in the mean
    assert m.es == pytest.approx((2 * 100 / 3 + 0) / 2, abs=1e-12)    # points: the mean over both users
    assert sum(t.es for t in account.breakdown) + m.es == pytest.approx(account.es, abs=1e-12)


def test_a_change_of_measures_changes_the_fingerprint_of_the_config():
    from streams.worker.timers import config_fingerprint   # the edge re-scores on a new fingerprint
    assert config_fingerprint(likes_and({})) != config_fingerprint(likes_and({"tickets": TICKETS}))


@pytest.mark.parametrize(("measures", "key"), [
    ({"tickets": {**TICKETS, "type": "like"}}, "measures.tickets.type"),   # like is a weighted count
    ({"tickets": {**TICKETS, "target": 0}}, "measures.tickets.target"),
    ({"nps": {**NPS, "linear": [0]}}, "measures.nps.linear"),
    ({"nps": {**NPS, "ranges": [[0, 0]]}}, "measures.nps.linear"),          # both
    ({"Bad Name": NPS}, "measures.Bad Name"),
])
def test_a_bad_measure_names_its_key(measures, key):
    with pytest.raises(ConfigError) as raised:
        likes_and(measures)
    assert raised.value.key == key
