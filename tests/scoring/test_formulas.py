"""Hand-worked cases for every formula in scoring.formulas (docs/scores-and-kpis.md).

Every expected value is worked out by hand in the comment beside it, never by
calling the function under test.
"""

from __future__ import annotations

import pytest

from scoring import formulas
from scoring.engine import Outcome, Scorer
from scoring.formulas import Band, Tier
from tests.builders import CONFIG

# The CER worked example of docs/scores-and-kpis.md.
SEED_001_WEIGHTS = {"follow": 3, "like": 1, "comment": 2, "reach_out": 2, "tag": 2}
SEED_001_COUNTS = {"follow": 10, "like": 300, "comment": 35, "reach_out": 5, "tag": 3}
T0 = 1_790_000_000_000  # an arbitrary event time (epoch ms)


# --- CER ------------------------------------------------------------------------------------


def test_the_cer_worked_example_is_416():
    # 10*3 + 300*1 + 35*2 + 5*2 + 3*2 = 30 + 300 + 70 + 10 + 6 = 416
    assert formulas.customer_engagement_rate(SEED_001_COUNTS, SEED_001_WEIGHTS) == 416


def test_the_cer_worked_example_is_below_par_against_benchmark_500():
    cer = formulas.customer_engagement_rate(SEED_001_COUNTS, SEED_001_WEIGHTS)
    assert cer < 500
    # and the one-customer "share below benchmark" is then 1/1 = 100 %
    assert formulas.share_below([cer], 500) == 100.0


def test_the_cer_worked_example_through_the_scorer_with_default_config():
    config = CONFIG
    scorer = Scorer(config)
    for i, (type_name, count) in enumerate(SEED_001_COUNTS.items()):
        result = scorer.process(
            {"event_id": f"seed001-{i}", "customer_id": "c-001", "type": type_name, "ts": T0 + i, "count": count},
            T0 + 10,
        )
        assert result.outcome is Outcome.ACCEPTED, result
    card = scorer.customer("c-001", T0 + 10)
    assert card is not None
    assert card.cer == 416
    assert card.below_benchmark is True
    # ES under the documented defaults (defaults.toml). The non-zero default weights, by group:
    #   social 3+1+2+3+2+2+2 = 15, web 1+1+2+3 = 7, loyalty 2+3 = 5,
    #   marketing email_open 1 + email_click 2 + ad_click 1 + conversion 5 = 9,
    #   commerce 5, voice 2+2+1+3+2 = 10  -> 15+7+5+9+5+10 = 51.
    # Components with the default targets (follow 3, like 75, comment 10, reach_out 2, tag 2): every
    # count reaches its target -> 100 each: 3*100 + 1*100 + 2*100 + 2*100 + 2*100 = 1000.
    assert card.es == pytest.approx(1000 / 51)
    assert card.tier is Tier.LOW


def test_the_cer_benchmark_comparison_is_strict():
    # exactly at the benchmark is not below par: 500 weighted points = 500 likes x 1
    config = CONFIG
    scorer = Scorer(config)
    scorer.process({"event_id": "e", "customer_id": "c", "type": "like", "ts": T0, "count": 500}, T0)
    card = scorer.customer("c", T0)
    assert card.cer == 500
    assert card.below_benchmark is False


def test_cer_ignores_unweighted_types():
    # like 10*1 = 10; page_view has no weight here -> adds nothing
    assert formulas.customer_engagement_rate({"like": 10, "page_view": 5}, {"like": 1}) == 10


def test_cer_of_no_events_is_zero():
    assert formulas.customer_engagement_rate({}, SEED_001_WEIGHTS) == 0


# --- ES -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "target", "expected"),
    [
        (50, 100, 50.0),    # 100 * 50/100
        (150, 100, 100.0),  # capped at 100 * min(1, 1.5)
        (100, 100, 100.0),  # exactly at target
        (0, 10, 0.0),
        (1, 3, 100 / 3),    # 100 * 1/3
        (5, 0, 0.0),        # no (zero) target -> 0, not a ZeroDivisionError
    ],
)
def test_engagement_component(count, target, expected):
    assert formulas.engagement_component(count, target) == pytest.approx(expected)


def test_engagement_score_weighted_mean_of_components():
    weights = {"a": 1, "b": 3}
    targets = {"a": 10, "b": 4}
    # m_a = 100*5/10 = 50, m_b = 100*2/4 = 50 -> (1*50 + 3*50) / 4 = 50; "c" is unweighted
    assert formulas.engagement_score({"a": 5, "b": 2, "c": 100}, weights, targets) == pytest.approx(50.0)
    # m_a = 100 (capped), m_b = 0 (no events) -> (1*100 + 3*0) / 4 = 25
    assert formulas.engagement_score({"a": 20}, weights, targets) == pytest.approx(25.0)
    # m_a = 0, m_b = 100*1/4 = 25 -> (0 + 3*25) / 4 = 18.75
    assert formulas.engagement_score({"b": 1}, weights, targets) == pytest.approx(18.75)


def test_engagement_score_saturates_at_100_and_starts_at_0():
    weights = {"a": 2, "b": 5}
    targets = {"a": 1, "b": 1}
    assert formulas.engagement_score({"a": 1000, "b": 1000}, weights, targets) == pytest.approx(100.0)
    assert formulas.engagement_score({}, weights, targets) == 0.0


def test_engagement_score_is_the_mean_component_when_weights_average_one():
    # the common "sum of weighted metrics / number of metrics"; with all weights 1 this is the
    # plain mean of the components: (100*3/10 + 100*10/10 + 100*1/4) / 3 = (30 + 100 + 25) / 3
    weights = {"x": 1, "y": 1, "z": 1}
    targets = {"x": 10, "y": 10, "z": 4}
    assert formulas.engagement_score({"x": 3, "y": 10, "z": 1}, weights, targets) == pytest.approx(155 / 3)


def test_engagement_score_skips_zero_weights_and_no_weights_is_zero():
    # weight 0 is "tracked but not scored": only b counts -> m_b = 100*1/2 = 50
    assert formulas.engagement_score({"a": 100, "b": 1}, {"a": 0, "b": 2}, {"a": 1, "b": 2}) == pytest.approx(50.0)
    assert formulas.engagement_score({"a": 5}, {}, {}) == 0.0


# --- tiers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0, Tier.LOW),
        (59.99, Tier.LOW),
        (60, Tier.MODERATE),
        (79.99, Tier.MODERATE),
        (80, Tier.EXCELLENT),
        (100, Tier.EXCELLENT),
    ],
)
def test_tier_boundaries(score, expected):
    assert formulas.tier(score) is expected


def test_tier_with_configured_thresholds():
    assert formulas.tier(69.9, excellent=90, moderate=70) is Tier.LOW
    assert formulas.tier(70, excellent=90, moderate=70) is Tier.MODERATE
    assert formulas.tier(89.9, excellent=90, moderate=70) is Tier.MODERATE
    assert formulas.tier(90, excellent=90, moderate=70) is Tier.EXCELLENT


def test_tier_rank_orders_tiers():
    assert Tier.LOW.rank < Tier.MODERATE.rank < Tier.EXCELLENT.rank


# --- decay -----------------------------------------------------------------------------------


def test_decayed_engagement_halves_per_half_life():
    # 10 at age 0 -> 10; 8 at one half-life -> 4; 4 at two half-lives -> 1: total 15
    assert formulas.decayed_engagement([(10, 0), (8, 14), (4, 28)], 14) == pytest.approx(15.0)
    # half a half-life: 2 * 0.5**0.5 = sqrt(2)
    assert formulas.decayed_engagement([(2, 7)], 14) == pytest.approx(2**0.5)


def test_decayed_engagement_future_ages_do_not_grow_and_empty_is_zero():
    # a negative age (an event ahead of as_of) counts at face value, not more
    assert formulas.decayed_engagement([(10, -5)], 14) == pytest.approx(10.0)
    assert formulas.decayed_engagement([], 14) == 0


# --- AER ------------------------------------------------------------------------------------


def test_active_engagement_rate():
    assert formulas.active_engagement_rate(30, 200) == pytest.approx(15.0)  # 30/200 = 0.15
    assert formulas.active_engagement_rate(1, 3) == pytest.approx(100 / 3)
    assert formulas.active_engagement_rate(50, 50) == pytest.approx(100.0)


def test_active_engagement_rate_no_members_is_zero():
    assert formulas.active_engagement_rate(0, 0) == 0.0


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0, Band.LOW),
        (14.99, Band.LOW),
        (15, Band.MODERATE),
        (20, Band.MODERATE),
        (25, Band.MODERATE),
        (25.01, Band.HIGH),
        (100, Band.HIGH),
    ],
)
def test_aer_band_boundaries(rate, expected):
    assert formulas.aer_band(rate) is expected


def test_aer_band_with_configured_limits():
    assert formulas.aer_band(9.9, low_below=10, high_above=40) is Band.LOW
    assert formulas.aer_band(10, low_below=10, high_above=40) is Band.MODERATE
    assert formulas.aer_band(40, low_below=10, high_above=40) is Band.MODERATE
    assert formulas.aer_band(40.5, low_below=10, high_above=40) is Band.HIGH


# --- usage -----------------------------------------------------------------------------------


def test_stickiness():
    assert formulas.stickiness(20, 100) == pytest.approx(20.0)  # DAU/MAU = 0.2
    assert formulas.stickiness(7, 7) == pytest.approx(100.0)


def test_feature_usage_rate():
    assert formulas.feature_usage_rate(15, 60) == pytest.approx(25.0)  # 15/60


def test_week_one_engagement():
    assert formulas.week_one_engagement(3, 12) == pytest.approx(25.0)  # 3/12


def test_pages_and_actions_per_session():
    assert formulas.pages_per_session(45, 10) == pytest.approx(4.5)
    assert formulas.actions_per_session(7, 2) == pytest.approx(3.5)


def test_average_session_duration():
    assert formulas.average_session_duration(600, 4) == pytest.approx(150.0)  # seconds


def test_bounce_rate():
    assert formulas.bounce_rate(3, 12) == pytest.approx(25.0)


# --- membership over a period ---------------------------------------------------------------


def test_retention_rate():
    # S = 100, E = 110, N = 20: (110 - 20)/100 = 90 %
    assert formulas.retention_rate(100, 110, 20) == pytest.approx(90.0)
    # nobody left, nobody new: 100 %
    assert formulas.retention_rate(40, 40, 0) == pytest.approx(100.0)
    # S = 50, E = 45, N = 5: (45 - 5)/50 = 80 %
    assert formulas.retention_rate(50, 45, 5) == pytest.approx(80.0)


def test_churn_rate():
    assert formulas.churn_rate(5, 200) == pytest.approx(2.5)   # 5/200
    assert formulas.churn_rate(10, 40) == pytest.approx(25.0)  # 10/40


def test_expected_lifespan():
    assert formulas.expected_lifespan(5, 120) == pytest.approx(20.0)    # 1 / 0.05
    assert formulas.expected_lifespan(25, 120) == pytest.approx(4.0)    # 1 / 0.25
    assert formulas.expected_lifespan(0.5, 120) == pytest.approx(120.0)  # 1/0.005 = 200, capped at 120
    assert formulas.expected_lifespan(0, 120) == pytest.approx(120.0)   # no churn: the cap


# --- voice of customer -----------------------------------------------------------------------


def test_nps_from_list():
    # promoters (9-10): 10, 9, 9, 10, 10 = 5; detractors (0-6): 3, 0, 6 = 3; passives 8, 7
    # 5/10 - 3/10 = 50 % - 30 % = 20
    assert formulas.nps([10, 9, 9, 8, 7, 3, 0, 6, 10, 10]) == pytest.approx(20.0)


def test_nps_from_mapping():
    # {10: 5, 8: 2, 0: 3}: 10 answers, 5 promoters, 3 detractors -> 20
    assert formulas.nps({10: 5, 8: 2, 0: 3}) == pytest.approx(20.0)
    # all detractors -> -100, all promoters -> +100, all passives -> 0
    assert formulas.nps({6: 4}) == pytest.approx(-100.0)
    assert formulas.nps([9, 10]) == pytest.approx(100.0)
    assert formulas.nps([7, 8, 8]) == pytest.approx(0.0)


def test_nps_boundaries_6_is_detractor_9_is_promoter():
    assert formulas.nps([6]) == pytest.approx(-100.0)
    assert formulas.nps([7]) == pytest.approx(0.0)
    assert formulas.nps([8]) == pytest.approx(0.0)
    assert formulas.nps([9]) == pytest.approx(100.0)


def test_csat():
    # 4-5 are satisfied: 5, 4 of [5, 4, 3, 2, 1] -> 2/5 = 40 %
    assert formulas.csat([5, 4, 3, 2, 1]) == pytest.approx(40.0)
    # {5: 3, 4: 1, 1: 4}: 4 satisfied of 8 -> 50 %
    assert formulas.csat({5: 3, 4: 1, 1: 4}) == pytest.approx(50.0)
    # 3 is not satisfied (the "%3-5" variant is not used)
    assert formulas.csat([3, 3]) == pytest.approx(0.0)


def test_ces():
    # mean effort: (1 + 2 + 3 + 7) / 4 = 3.25
    assert formulas.ces([1, 2, 3, 7]) == pytest.approx(3.25)
    # {7: 1, 1: 3}: (7 + 3) / 4 = 2.5
    assert formulas.ces({7: 1, 1: 3}) == pytest.approx(2.5)


def test_list_and_mapping_agree():
    # the same answers as a list and as {score: count}
    assert formulas.nps([9, 9, 2]) == formulas.nps({9: 2, 2: 1})
    assert formulas.csat([4, 1, 1]) == formulas.csat({4: 1, 1: 2})
    assert formulas.ces([2, 2, 5]) == formulas.ces({2: 2, 5: 1})


def test_whole_float_answers_are_accepted():
    # 9.0 is the whole number 9: a promoter
    assert formulas.nps([9.0]) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("func", "answers"),
    [
        (formulas.nps, [11]),
        (formulas.nps, [-1]),
        (formulas.nps, [7.5]),
        (formulas.nps, {11: 1}),
        (formulas.nps, {9: -1}),  # a negative number of responses
        (formulas.csat, [0]),
        (formulas.csat, [6]),
        (formulas.csat, {0: 2}),
        (formulas.csat, [4.5]),
        (formulas.ces, [0]),
        (formulas.ces, [8]),
        (formulas.ces, {8: 1}),
        (formulas.ces, [True]),  # a boolean is not a survey answer
    ],
)
def test_out_of_scale_answers_are_rejected(func, answers):
    with pytest.raises(ValueError):
        func(answers)


@pytest.mark.parametrize("func", [formulas.nps, formulas.csat, formulas.ces])
@pytest.mark.parametrize("answers", [[], {}])
def test_no_answers_is_zero(func, answers):
    assert func(answers) == 0.0


def test_mapping_with_only_zero_counts_is_zero():
    assert formulas.nps({10: 0, 0: 0}) == 0.0
    assert formulas.csat({5: 0}) == 0.0
    assert formulas.ces({7: 0}) == 0.0


def test_sentiment_score():
    # (6 - 2) / 10 = 40 %
    assert formulas.sentiment_score(6, 2, 10) == pytest.approx(40.0)
    # (1 - 4) / 5 = -60 %
    assert formulas.sentiment_score(1, 4, 5) == pytest.approx(-60.0)
    # all neutral -> 0
    assert formulas.sentiment_score(0, 0, 3) == pytest.approx(0.0)


# --- marketing -------------------------------------------------------------------------------


def test_conversion_rate():
    assert formulas.conversion_rate(3, 150) == pytest.approx(2.0)


def test_click_through_rate():
    assert formulas.click_through_rate(25, 1000) == pytest.approx(2.5)


def test_open_rate():
    assert formulas.open_rate(45, 180) == pytest.approx(25.0)


# --- commerce --------------------------------------------------------------------------------


def test_arpu():
    assert formulas.arpu(1000, 40) == pytest.approx(25.0)


def test_average_transaction_value():
    assert formulas.average_transaction_value(1000, 8) == pytest.approx(125.0)


def test_purchase_frequency():
    assert formulas.purchase_frequency(12, 8) == pytest.approx(1.5)


def test_customer_lifetime_value():
    # 125 per purchase x 2 purchases per period x 10 periods = 2500
    assert formulas.customer_lifetime_value(125, 2, 10) == pytest.approx(2500.0)
    # the whole chain: ATV 1000/8 = 125, frequency 12/8 = 1.5, churn 5 % -> lifespan 20
    # -> 125 * 1.5 * 20 = 3750
    clv = formulas.customer_lifetime_value(
        formulas.average_transaction_value(1000, 8),
        formulas.purchase_frequency(12, 8),
        formulas.expected_lifespan(formulas.churn_rate(5, 100), 120),
    )
    assert clv == pytest.approx(3750.0)


# --- support ---------------------------------------------------------------------------------


def test_first_contact_resolution():
    assert formulas.first_contact_resolution(7, 10) == pytest.approx(70.0)


def test_average_handle_time():
    assert formulas.average_handle_time(900, 4) == pytest.approx(225.0)


# --- score distribution ----------------------------------------------------------------------


def test_mean():
    assert formulas.mean([1, 2, 3, 6]) == pytest.approx(3.0)  # 12/4
    assert formulas.mean(iter([10.0])) == pytest.approx(10.0)  # any iterable
    assert formulas.mean([]) == 0.0


def test_median():
    assert formulas.median([5, 1, 3]) == pytest.approx(3.0)
    assert formulas.median([4, 1, 3, 2]) == pytest.approx(2.5)  # (2 + 3) / 2
    assert formulas.median(x for x in (7.0,)) == pytest.approx(7.0)
    assert formulas.median([]) == 0.0


def test_share_below():
    # strictly below 500: 100 and 499 -> 2 of 4 = 50 %
    assert formulas.share_below([100, 499, 500, 501], 500) == pytest.approx(50.0)
    assert formulas.share_below([600, 700], 500) == pytest.approx(0.0)
    assert formulas.share_below([], 500) == 0.0


# --- zero denominators: every rate over nothing is 0 -----------------------------------------


@pytest.mark.parametrize(
    ("func", "args"),
    [
        (formulas.active_engagement_rate, (0, 0)),
        (formulas.active_engagement_rate, (5, 0)),  # active but no members: still 0, no error
        (formulas.stickiness, (3, 0)),
        (formulas.feature_usage_rate, (2, 0)),
        (formulas.week_one_engagement, (1, 0)),
        (formulas.pages_per_session, (10, 0)),
        (formulas.actions_per_session, (10, 0)),
        (formulas.average_session_duration, (300, 0)),
        (formulas.bounce_rate, (1, 0)),
        (formulas.retention_rate, (0, 10, 2)),
        (formulas.churn_rate, (3, 0)),
        (formulas.sentiment_score, (2, 1, 0)),
        (formulas.conversion_rate, (4, 0)),
        (formulas.click_through_rate, (4, 0)),
        (formulas.open_rate, (4, 0)),
        (formulas.arpu, (100, 0)),
        (formulas.average_transaction_value, (100, 0)),
        (formulas.purchase_frequency, (3, 0)),
        (formulas.first_contact_resolution, (2, 0)),
        (formulas.average_handle_time, (60, 0)),
    ],
)
def test_zero_denominator_is_zero(func, args):
    assert func(*args) == 0.0


def test_visit_frequency():
    assert formulas.visit_frequency(12, 8) == pytest.approx(1.5)   # 12 visits by 8 customers
    assert formulas.visit_frequency(5, 0) == 0.0                    # no customers: 0, no error


def test_turnover_rate():
    assert formulas.turnover_rate(10, 100, 140) == pytest.approx(100 * 10 / 120)   # 10 lost of 120 on average
    assert formulas.turnover_rate(3, 0, 0) == 0.0                                  # no members: 0, no error


def test_activation_and_abandonment_rates():
    assert formulas.activation_rate(3, 12) == pytest.approx(25.0)     # 3 of 12 sessions held an action
    assert formulas.abandonment_rate(6, 12) == pytest.approx(50.0)    # 6 browsed 2+ pages and left without one
    assert formulas.activation_rate(1, 0) == formulas.abandonment_rate(1, 0) == 0.0   # no sessions: 0


def test_csat_across_channels_weights_each_channel_by_its_interactions():
    web = ({4: 3, 2: 1}, 300)        # CSAT 75 on 300 interactions
    phone = ({5: 1, 1: 1}, 100)      # CSAT 50 on 100
    chat = ({}, 600)                 # no answers: no CSAT to weight, left out
    assert formulas.csat_across_channels({"web": web, "phone": phone, "chat": chat}) == pytest.approx(
        (75 * 300 + 50 * 100) / 400)
    assert formulas.csat_across_channels({"email": ({5: 2}, 0)}) == 0.0     # answers, no interactions
    assert formulas.csat_across_channels({}) == 0.0


def test_share_of_voice_and_brand_search_rate():
    assert formulas.share_of_voice(30, 90) == pytest.approx(25.0)      # 30 of 120 searches name the brand
    assert formulas.share_of_voice(0, 0) == 0.0
    assert formulas.brand_search_rate(30, 600) == pytest.approx(5.0)
    assert formulas.brand_search_rate(3, 0) == 0.0
