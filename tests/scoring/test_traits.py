"""Traits (docs/traits.md): allow-listed, typed, newest event wins; shown, used as the segment and as
a measure; hand-worked."""

from __future__ import annotations

import pytest

from scoring.config import ConfigError, build_config, config_mapping, default_mapping, load_config
from scoring.engine import Outcome, Scorer
from scoring.events import validate_event
from scoring.reasons import EventRejected, Reason
from scoring.timeutil import HOUR
from tests.builders import CONFIG, NOW, ev


def traits(customer: str, hours_ago: float, **values) -> dict:
    return ev(customer, "traits", NOW - int(hours_ago * HOUR), traits=values)


def rejected(obj: dict, config=CONFIG) -> EventRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(EventRejected) as caught:
        validate_event(obj, config)
    return caught.value


def test_allowed_traits_are_kept_typed_and_shown_others_ignored():
    scorer = Scorer(CONFIG)
    result = scorer.process(traits("c", 1, plan="growth", arr=36000, seats_used=21.5, renewal_date="2027-04-01",
                                   email="a@b.example", address={"city": "Lyon"}), NOW)
    assert result.outcome is Outcome.ACCEPTED
    card = scorer.customer("c", NOW)
    assert card.to_dict()["traits"] == {"arr": 36000, "plan": "growth", "renewal_date": "2027-04-01",
                                        "seats_used": 21.5}
    assert scorer.customers["c"].traits["renewal_date"][2] == 1_806_537_600_000     # epoch ms, midnight UTC
    assert (card.active, card.es, card.counts) == (False, 0.0, {"traits": 1})        # passive, not scored


def test_the_newest_event_wins_per_trait_whatever_the_arrival_order_and_null_unsets():
    events = [traits("c", 3, plan="starter", arr=100), traits("c", 1, plan="growth"), traits("c", 2, arr=None),
              ev("c", "like", NOW - 2 * HOUR, traits={"owner": "ana"})]        # any event may carry traits
    shown = []
    for order in (events, events[::-1], [events[2], events[0], events[3], events[1]]):
        scorer = Scorer(CONFIG)
        for event in order:
            scorer.process(dict(event), NOW)
        shown.append(scorer.customer("c", NOW).traits)
    assert shown == [{"owner": "ana", "plan": "growth"}] * 3


@pytest.mark.parametrize(("values", "field"), [
    ({"arr": "lots"}, "traits.arr"), ({"arr": True}, "traits.arr"), ({"plan": 3}, "traits.plan"),
    ({"plan": "x" * 500}, "traits.plan"), ({"renewal_date": "next spring"}, "traits.renewal_date"),
])
def test_an_allowed_trait_of_the_wrong_type_is_rejected_naming_it(values, field):
    caught = rejected(ev("c", "traits", NOW, traits=values))
    assert (caught.reason, caught.field) == (Reason.INVALID_FIELD, field)


def test_a_traits_event_needs_its_traits_as_an_object():
    assert rejected(ev("c", "traits", NOW)).reason is Reason.MISSING_FIELD
    assert rejected(ev("c", "traits", NOW, traits=["plan"])).field == "traits"


def test_identify_and_group_calls_are_traits_events_a_group_call_naming_the_account():
    identify = validate_event({"type": "identify", "messageId": "m1", "userId": "u1", "timestamp": NOW,
                               "traits": {"plan": "pro", "email": "x@y.example"}}, CONFIG)
    assert (identify.type, identify.customer_id, identify.traits, identify.account_id) == (
        "traits", "u1", (("plan", "pro"),), None)
    group = validate_event({"type": "group", "messageId": "m2", "userId": "u1", "groupId": "acme",
                            "timestamp": NOW, "traits": {"arr": 1200}}, CONFIG)
    assert (group.type, group.account_id, group.traits) == ("traits", "acme", (("arr", 1200),))
    caught = rejected({"type": "group", "messageId": "m3", "userId": "u1", "timestamp": NOW})
    assert (caught.reason, caught.field) == (Reason.MISSING_FIELD, "groupId")
    caught = rejected({"type": "identify", "messageId": "m4", "userId": "u1", "timestamp": NOW,
                       "traits": {"arr": "lots"}})
    assert (caught.reason, caught.field) == (Reason.INVALID_FIELD, "traits.arr")


def likes_by_plan(**more):
    """Likes weigh 1 with a target of 10; the `pro` plan's scorecard: likes' target 5."""
    weights = {name: 0 for name in default_mapping()["weights"]}
    weights["like"] = 1
    return load_config(overrides={"weights": weights, "targets": {"like": 10},
                                  "scorecards": {"pro": {"targets": {"like": 5}}}, **more})


def test_a_string_trait_can_be_the_segment_and_the_events_segment_field_then_no_longer_counts():
    by_plan = likes_by_plan(scoring={"segment_from": "plan"})
    by_event = likes_by_plan()
    events = [ev("c", "like", NOW - 3 * HOUR, count=4, segment="pro"), traits("c", 2, plan="free")]
    for config, es, segment in ((by_event, 80.0, "pro"), (by_plan, 40.0, "free")):
        scorer = Scorer(config)
        for event in events:
            scorer.process(dict(event), NOW)
        card = scorer.customer("c", NOW)
        assert (card.es, card.segment) == (es, segment)
    scorer = Scorer(by_plan)
    for event in [*events, traits("c", 1, plan="pro")]:
        scorer.process(dict(event), NOW)
    assert (scorer.customer("c", NOW).es, [c.customer_id for c in scorer.leaderboard(NOW, segment="pro")]) == (
        80.0, ["c"])


def test_a_trait_or_a_ratio_of_traits_is_a_measure():
    config = likes_by_plan(measures={"adoption": {"kind": "trait", "trait": "seats_used", "per": "seats_bought",
                                                  "weight": 1, "linear": [0.2, 0.9]}})
    for values, reading, es in (({"seats_used": 11, "seats_bought": 20}, 0.55, (50 + 50) / 2),
                                ({"seats_used": 20, "seats_bought": 20}, 1.0, (50 + 100) / 2),
                                ({"seats_used": 3}, None, 50.0),                  # no ratio: left out
                                ({"seats_used": 3, "seats_bought": 0}, None, 50.0)):
        scorer = Scorer(config)
        scorer.process(ev("c", "like", NOW - 3 * HOUR, count=5), NOW)
        scorer.process(traits("c", 1, **values), NOW)
        card = scorer.customer("c", NOW)
        assert card.measures[0].reading == pytest.approx(reading) and card.es == pytest.approx(es, abs=1e-12)
        assert card.measures[0].type == "seats_used/seats_bought"


@pytest.mark.parametrize(("overrides", "key"), [
    ({"traits": {"tier": "colour"}}, "traits.tier"),
    ({"traits": {"Bad Name": "string"}}, "traits.Bad Name"),
    ({"scoring": {"segment_from": "arr"}}, "scoring.segment_from"),           # a number trait
    ({"scoring": {"segment_from": "industry"}}, "scoring.segment_from"),      # not a trait
    ({"measures": {"m": {"kind": "trait", "trait": "plan", "weight": 1, "linear": [0, 1]}}}, "measures.m.trait"),
    ({"measures": {"m": {"kind": "trait", "trait": "arr", "per": "seats", "weight": 1, "linear": [0, 1]}}},
     "measures.m.per"),
    ({"measures": {"m": {"kind": "trait", "weight": 1, "linear": [0, 1]}}}, "measures.m.trait"),
    ({"measures": {"m": {"kind": "trait", "trait": "arr", "type": "like", "weight": 1, "linear": [0, 1]}}},
     "measures.m.type"),
])
def test_a_bad_trait_setting_names_its_key(overrides, key):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=overrides)
    assert caught.value.key == key


def test_traits_and_the_segment_source_round_trip_through_the_config():
    config = load_config(overrides={"traits": {"industry": "string"}, "scoring": {"segment_from": "industry"},
                                    "measures": {"arr": {"kind": "trait", "trait": "arr", "weight": 2,
                                                         "ranges": [[0, 0], [10000, 50], [50000, 100]]}}})
    assert config.traits["industry"] == "string" and config.traits["plan"] == "string"   # added to the shipped
    assert build_config(config_mapping(config)) == config
    assert config_mapping(CONFIG)["scoring"]["segment_from"] == "segment" and CONFIG.segment_from is None


def test_an_alert_carries_the_customers_traits():
    """The plan is the segment; moving to a harsher plan's scorecard is a tier downgrade, and the
    alert names the owner and the plan (a webhook routes or prints them)."""
    weights = {name: 0 for name in default_mapping()["weights"]}
    weights["like"] = 1
    config = load_config(overrides={"weights": weights, "targets": {"like": 10}, "scoring": {"segment_from": "plan"},
                                    "scorecards": {"enterprise": {"targets": {"like": 20}}},
                                    "alerts": {"inactivity": "off", "activation": "off"}})
    scorer = Scorer(config)
    scorer.process(traits("c", 5, owner="ana", plan="growth", email="x@y.example"), NOW)
    assert scorer.process(ev("c", "like", NOW - 4 * HOUR, count=9), NOW).alerts == ()       # ES 90: excellent
    [alert] = scorer.process(traits("c", 3, plan="enterprise", seats_used=2), NOW).alerts    # ES 45: low
    assert (alert.rule.value, alert.before["tier"], alert.after["tier"]) == ("tier_downgrade", "excellent", "low")
    assert alert.to_dict()["traits"] == {"owner": "ana", "plan": "enterprise", "seats_used": 2}
