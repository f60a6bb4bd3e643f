"""Account-level alerts (docs/alerts.md), hand-worked: the roll-up of GET /accounts/{id}
against the account's last evaluation."""

from __future__ import annotations

from scoring import formulas
from scoring.account_alerts import AccountRule, AccountSnapshot, accounts_to_evaluate, evaluate_account, roll_up
from scoring.config import load_config
from scoring.standing import Standing

# tiers 80 / 60; score drop 20 % from a baseline of at least 10 (the hand-worked numbers below; the
# shipped default is 30 % from 30)
CONFIG = load_config(overrides={"alerts": {"score_drop_percent": 20, "score_drop_min_reference": 10}})
T = 1_790_000_000_000


def test_the_first_evaluation_only_remembers():
    fired, snap = evaluate_account(None, "acme", {"u1": 70.0, "u2": 90.0}, T, CONFIG)
    assert fired == [] and (snap.es, snap.tier.value, snap.baseline_es) == (80.0, "excellent", 80.0)


def test_a_tier_fall_and_a_drop_fire_once_each_naming_the_users_that_drove_them():
    _, snap = evaluate_account(None, "acme", {"u1": 70.0, "u2": 90.0, "u3": 80.0}, T, CONFIG)   # 80: excellent
    fired, snap = evaluate_account(snap, "acme", {"u1": 38.0, "u2": 88.0}, T + 1, CONFIG)        # u3 left: 63
    assert [a.rule for a in fired] == [AccountRule.TIER_DOWNGRADE, AccountRule.SCORE_DROP]
    tier, drop = fired
    assert tier.before == {"tier": "excellent", "es": 80.0} and tier.after == {"tier": "moderate", "es": 63.0}
    assert drop.before == {"tier": "excellent", "es": 80.0} and drop.after["drop_percent"] == 21.25   # 17 of 80
    assert [(d.customer_id, d.es_before, d.es_now) for d in tier.drivers] == [
        ("u1", 70.0, 38.0), ("u2", 90.0, 88.0), ("u3", 80.0, None)]          # the biggest fall first, then who left
    assert tier.sentence == ("account acme: mean ES 80.0 → 63.0 (excellent → moderate) across 2 users: "
                             "u1 70.0 → 38.0, u2 90.0 → 88.0, u3 left")
    assert tier.to_dict()["why"]["drivers"][2] == {"customer_id": "u3", "es_before": 80.0, "es_now": None}
    # nothing new: quiet; the drop's baseline restarted at 64
    again, snap = evaluate_account(snap, "acme", {"u1": 38.0, "u2": 88.0}, T + 2, CONFIG)
    assert again == [] and snap.baseline_es == 63.0
    # a slide to 50: 21 % below the new baseline of 63, and a tier lower: both fire
    fired, snap = evaluate_account(snap, "acme", {"u1": 30.0, "u2": 70.0}, T + 3, CONFIG)          # 50: low
    assert [a.rule for a in fired] == [AccountRule.TIER_DOWNGRADE, AccountRule.SCORE_DROP]
    fired, snap = evaluate_account(snap, "acme", {"u1": 30.0, "u2": 68.0}, T + 4, CONFIG)          # 49: -2 %
    assert fired == []


def test_a_drop_at_the_threshold_or_from_a_small_baseline_stays_quiet():
    _, snap = evaluate_account(None, "a", {"u": 50.0}, T, CONFIG)
    assert evaluate_account(snap, "a", {"u": 40.0}, T + 1, CONFIG)[0] == []            # exactly 20 %: not more
    _, small = evaluate_account(None, "b", {"u": 8.0}, T, CONFIG)
    assert evaluate_account(small, "b", {"u": 1.0}, T + 1, CONFIG)[0] == []            # baseline below 10


def test_the_roll_up_is_the_account_cards_and_the_snapshot_round_trips():
    assert roll_up({"a": 50.0, "b": 71.0}, CONFIG) == (60.5, roll_up({"x": 60.5}, CONFIG)[1])
    snap = AccountSnapshot(roll_up({"a": 50.0}, CONFIG)[1], 50.0, 55.0, {"a": 50.0})
    assert AccountSnapshot.from_dict(snap.to_dict()) == snap


def test_a_users_account_is_evaluated_when_its_es_tier_or_account_moved():
    def user(es: float, tier: formulas.Tier, account: str | None, sums: dict | None = None) -> Standing:
        return Standing("u", es, 0.5, tier, True, account, True, None, (), sums or {})

    low, moderate = formulas.Tier.LOW, formulas.Tier.MODERATE
    assert accounts_to_evaluate(None, user(10, low, "a")) == {"a"}                       # a new user
    assert accounts_to_evaluate(None, user(10, low, None)) == set()                      # in no account
    assert accounts_to_evaluate(user(10, low, "a"), user(12, low, "a")) == {"a"}         # its ES
    assert accounts_to_evaluate(user(10, low, "a"), user(10, moderate, "a")) == {"a"}    # its tier
    assert accounts_to_evaluate(user(10, low, "a"), user(10, low, "b")) == {"a", "b"}    # left one, joined one
    assert accounts_to_evaluate(user(10, low, "a"), user(10, low, "a", {"x": 1})) == set()   # only its sums
    assert accounts_to_evaluate(user(10, low, "a"), None) == set()
