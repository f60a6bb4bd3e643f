"""Score history and trend, hand-worked, and equal to the score card at every point's instant."""

from __future__ import annotations

import pytest

from scoring.config import default_mapping, load_config
from scoring.engine import Scorer
from scoring.history import account_history, customer_history
from scoring.scores import account_card, score_card
from scoring.timeutil import DAY, HOUR
from devstack.traffic import TrafficGenerator, TrafficSettings
from tests.builders import CONFIG, DAY0, ev


def likes_only(horizon: str = "7d"):
    """ES = 10 x likes (capped at 100) over a 3-day window; CER = likes."""
    weights = {name: 0 for name in default_mapping()["weights"]}
    weights["like"] = 1
    return load_config(overrides={"weights": weights, "targets": {"like": 10}, "scoring": {"window": "3d"},
                                  "history": {"horizon": horizon}})


def test_a_customers_history_hand_worked():
    config = likes_only()
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    for day, likes in ((0, 5), (2, 3), (5, 2)):
        scorer.process(ev("c", "like", t + day * DAY, count=likes), t + day * DAY)
    as_of = t + 7 * DAY
    history = customer_history(scorer.customers["c"], as_of, config)
    # windows [b-2, b] over days 0..7: 5, 5, 8, 3, 3, 2, 2, 2 likes
    assert [(p.es, p.cer, p.tier.value) for p in history.points] == [
        (50.0, 5, "low"), (50.0, 5, "low"), (80.0, 8, "excellent"), (30.0, 3, "low"), (30.0, 3, "low"),
        (20.0, 2, "low"), (20.0, 2, "low"), (20.0, 2, "low")]
    assert [p.at_ms for p in history.points] == [DAY0 + (d + 1) * DAY - 1 for d in range(7)] + [as_of]
    assert history.changes == {"7d": -30.0, "30d": None}            # 20 now, 50 seven days ago; no 30 days yet
    assert history.to_dict()["points"][2] == {"at": DAY0 + 3 * DAY - 1, "es": 80.0, "cer": 8, "tier": "excellent"}


def test_every_point_equals_the_score_card_of_its_instant_on_generated_traffic():
    """The core's card at a point's instant (with nothing newer in the state) is the point."""
    scorer = Scorer(CONFIG)
    start = DAY0
    messages = list(TrafficGenerator(TrafficSettings(customers=40, seed=11)).messages(3000, start, 45 * DAY))
    cut = start + 45 * DAY
    for message in messages:
        scorer.process(message.value, message.at_ms)
    for cid in sorted(scorer.customers)[:15]:
        state = scorer.customers[cid]
        history = customer_history(state, cut, CONFIG)
        assert len(history.points) == 31
        newest = score_card(state, cut, CONFIG, detail=False)
        assert (history.points[-1].es, history.points[-1].cer, history.points[-1].tier) == \
            (newest.es, newest.cer, newest.tier)
        assert history.changes["30d"] == pytest.approx(history.points[-1].es - history.points[0].es)
    # replay the stream up to each of a few points' instants: the card then is the point
    for back in (1, 6, 29):
        at = history.points[-1 - back].at_ms
        partial = Scorer(CONFIG)
        for message in messages:
            if message.at_ms <= at:
                partial.process(message.value, message.at_ms)
        card = score_card(partial.customers[cid], at, CONFIG, detail=False)
        point = history.points[-1 - back]
        assert (point.es, point.cer) == (pytest.approx(card.es), card.cer), back


def test_an_accounts_history_rolls_up_its_users_per_point():
    config = likes_only()
    scorer = Scorer(config)
    t = DAY0 + 12 * HOUR
    scorer.process(ev("u1", "like", t, count=9, account_id="acme"), t)
    scorer.process(ev("u2", "like", t + 2 * DAY, count=4, account_id="acme"), t + 2 * DAY)
    as_of = t + 3 * DAY
    states = [scorer.customers["u1"], scorer.customers["u2"]]
    history = account_history(states, as_of, config)
    assert [(p.es, p.cer) for p in history.points][-4:] == [(45.0, 9), (45.0, 9), (65.0, 13), (20.0, 4)]
    card = account_card("acme", states, as_of, config)
    assert (history.points[-1].es, history.points[-1].cer, history.points[-1].tier) == (card.es, card.cer, card.tier)
