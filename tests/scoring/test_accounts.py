"""Accounts: users weighed by a trait (an ARR-weighted roll-up) and the account's traits, by hand.

Every place an account is rolled up weighs its users the same way: the card and its breakdown,
the summary the batch read builds from standings, the history and the account alerts.
"""

from __future__ import annotations

import pytest

from scoring import formulas
from scoring.account_alerts import AccountRule, evaluate_account, roll_up
from scoring.config import ConfigError, default_mapping, load_config
from scoring.engine import Scorer
from scoring.history import account_history, customer_history
from scoring.scores import account_summary, account_weights
from scoring.standing import standing
from scoring.timeutil import DAY, HOUR
from tests.builders import NOW, ev

TICKETS = {"kind": "penalty", "type": "ticket_opened", "weight": 1, "target": 4}
NPS = {"kind": "average", "type": "nps_response", "weight": 2, "linear": [0, 10]}


def config(weight: str = "arr", **more):
    return load_config(overrides={"accounts": {"weight": weight}, **more})


def scored(cfg, events):
    scorer = Scorer(cfg)
    for event in events:
        scorer.process(event, NOW)
    return scorer


def acme(nps: bool = False) -> list[dict]:
    """u1 (ARR 90,000) little use, u2 (ARR 10,000) much, u3 no ARR; u4 in another account."""
    at = NOW - 3 * HOUR
    events = [ev("u1", "like", at, count=5, account_id="acme"), ev("u2", "share", at, count=60, account_id="acme"),
              ev("u3", "comment", at, count=20, account_id="acme"), ev("u4", "like", at, account_id="globex"),
              ev("u1", "traits", at, traits={"arr": 90_000}), ev("u2", "traits", at, traits={"arr": 10_000}),
              ev("u2", "ticket_opened", at, count=3, account_id="acme")]
    if nps:
        events += [ev("u1", "nps_response", at, value=2, account_id="acme"),
                   ev("u2", "nps_response", at, value=10, account_id="acme")]
    return events


def test_the_account_es_is_the_users_mean_weighted_by_their_arr_and_a_user_without_counts_for_nothing():
    weighted, plain = scored(config(), acme()), scored(config("users"), acme())
    es = {u: weighted.customer(u, NOW).es for u in ("u1", "u2", "u3")}
    assert es["u1"] < es["u2"]                         # the big customer uses it least
    card = weighted.account("acme", NOW)
    assert card.es == pytest.approx((90_000 * es["u1"] + 10_000 * es["u2"]) / 100_000, rel=1e-15)
    assert plain.account("acme", NOW).es == formulas.mean(es.values())
    assert card.es < plain.account("acme", NOW).es
    sc = weighted.config.scoring
    assert card.tier is formulas.tier(card.es, sc.tier_excellent, sc.tier_moderate)
    assert (card.cer, card.users, card.tiers) == (plain.account("acme", NOW).cer, 3, plain.account("acme", NOW).tiers)
    assert sum(t.es for t in card.breakdown) == pytest.approx(card.es, rel=1e-12)    # the points still add up


def test_measures_points_readings_and_scores_are_weighted_the_same_and_still_add_up():
    cfg = config(measures={"tickets": TICKETS, "nps": NPS})
    card = scored(cfg, acme(nps=True)).account("acme", NOW)
    assert sum(t.es for t in card.breakdown) + sum(m.es for m in card.measures) == pytest.approx(card.es, rel=1e-12)
    nps = next(m for m in card.measures if m.name == "nps")
    assert nps.reading == pytest.approx((90_000 * 2 + 10_000 * 10) / 100_000)     # u3 has no answer: left out
    tickets = next(m for m in card.measures if m.name == "tickets")
    assert tickets.reading == pytest.approx((90_000 * 0 + 10_000 * 3) / 100_000)  # u3: 0 tickets, but weight 0


def test_an_account_where_no_user_has_the_trait_counts_each_once():
    at = NOW - HOUR
    events = [ev("a", "like", at, count=3, account_id="x"), ev("b", "share", at, count=9, account_id="x"),
              ev("a", "traits", at, traits={"arr": 0})]                 # 0: not above 0, counts for nothing
    weighted, plain = scored(config(), events), scored(config("users"), events)
    assert weighted.account("x", NOW).to_dict() == plain.account("x", NOW).to_dict()
    assert account_weights([{"arr": 0}, {}], weighted.config) == [0.0, 0.0]
    assert account_weights([{"arr": 5}], plain.config) is None
    assert formulas.weighted_mean([1.0, 3.0], [0.0, 0.0]) == 2.0


def test_the_summary_from_standings_the_history_and_the_account_alerts_weigh_the_same():
    cfg = config()
    scorer = scored(cfg, acme())
    states = [s for s in scorer.customers.values() if s.account_id == "acme"]
    card = scorer.account("acme", NOW)
    standings = [standing(s, scorer.alert_states.get(s.customer_id, {}), NOW, cfg) for s in states]
    weights = account_weights([dict(s.traits) for s in standings], cfg)
    summary = account_summary("acme", standings, NOW, cfg.scoring, weights)
    assert summary.es == card.es and summary.tier is card.tier
    history = account_history(states, NOW, cfg)
    assert history.points[-1].es == card.es
    users = [customer_history(s, NOW, cfg).points for s in states]
    first = formulas.weighted_mean([u[0].es for u in users], [90_000.0 if s.customer_id == "u1" else 10_000.0
                                                              if s.customer_id == "u2" else 0.0 for s in states])
    assert history.points[0].es == first
    es = {s.customer_id: s.es for s in standings}
    by_user = dict(zip(es, weights))
    assert roll_up(es, cfg, by_user) == (card.es, card.tier)
    # the big customer falls: weighted, the account's ES falls 40 % (an alert); the plain mean's 10.5 % does not
    es, by_user = {"u1": 40.0, "u2": 90.0, "u3": 60.0}, {"u1": 90_000.0, "u2": 10_000.0, "u3": 0.0}
    _, snapshot = evaluate_account(None, "acme", es, NOW, cfg, by_user)
    fallen = {**es, "u1": 20.0}
    fired, _ = evaluate_account(snapshot, "acme", fallen, NOW + 1, cfg, by_user)
    unweighted, _ = evaluate_account(evaluate_account(None, "acme", es, NOW, cfg)[1], "acme", fallen, NOW + 1, cfg)
    assert [a.rule for a in fired] == [AccountRule.SCORE_DROP]
    assert AccountRule.SCORE_DROP not in [a.rule for a in unweighted]
    assert (fired[0].before["es"], fired[0].after["es"]) == (45.0, 27.0)


def test_an_accounts_traits_are_its_users_newest_per_trait_by_event_time():
    at = NOW - 2 * DAY
    events = [ev("a", "traits", at, account_id="acme", traits={"plan": "growth", "arr": 1000, "owner": "ana"}),
              ev("b", "traits", at + HOUR, account_id="acme", traits={"plan": "enterprise"}),
              ev("a", "traits", at + 2 * HOUR, traits={"owner": None}),       # unset by the newest: unknown
              ev("b", "traits", at - HOUR, traits={"arr": 5000, "renewal_date": "2027-04-01"}),   # older arr
              ev("c", "traits", at + 3 * HOUR, account_id="globex", traits={"plan": "starter"}),
              ev("a", "like", at), ev("b", "like", at)]
    card = scored(config("users"), events).account("acme", NOW)
    assert card.traits == {"arr": 1000, "plan": "enterprise", "renewal_date": "2027-04-01"}
    assert card.to_dict()["traits"] == card.traits
    assert "traits" not in account_summary("acme", [], NOW, config("users").scoring).to_dict()


@pytest.mark.parametrize("weight", ["plan", "renewal_date", "unknown_trait", 3])
def test_a_weight_that_is_not_a_number_trait_stops_start_up_naming_the_key(weight):
    with pytest.raises(ConfigError) as info:
        config(weight)
    assert "accounts.weight" in str(info.value)


def test_the_shipped_default_counts_each_user_once():
    assert default_mapping()["accounts"] == {"weight": "users"} and load_config().account_weight is None
