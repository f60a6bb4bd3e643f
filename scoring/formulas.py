"""Every KPI formula and the per-customer scores (CER, ES, tiers): docs/scores-and-kpis.md.

Plain numbers and mappings in, a number out. Percentages are on a 0-100 scale
(NPS and sentiment on -100..100). A zero denominator is defined, never an exception:
a rate over nothing is 0 (no members -> AER 0, no sessions -> bounce rate 0).
Where published definitions differ, the standard one is used; docs/scores-and-kpis.md's KPI
section lists each such choice. Float sums use math.fsum, so an aggregate never
depends on the order customers or events arrived in. A metric number (#N) is the metric's
row in the 37-metric catalogue of docs/scores-and-kpis.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from enum import StrEnum

# --- helpers --------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else 0.0


def _percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator > 0 else 0.0


def _histogram(scores: Iterable[float] | Mapping[int, int], low: int, high: int, name: str) -> dict[int, int]:
    """Survey answers as {score: responses}; accepts a list of answers or such a mapping."""
    counts: dict[int, int] = {}
    pairs = scores.items() if isinstance(scores, Mapping) else ((s, 1) for s in scores)
    for score, responses in pairs:
        if isinstance(score, bool) or score != int(score) or not low <= score <= high:
            raise ValueError(f"{name} answers are whole numbers {low}..{high} (got {score!r})")
        if responses < 0:
            raise ValueError(f"{name} response counts must be >= 0 (got {responses!r})")
        counts[int(score)] = counts.get(int(score), 0) + int(responses)
    return counts


# --- per-customer scores: CER, ES, tiers, decay -------------------------------------------


class Tier(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    EXCELLENT = "excellent"

    @property
    def rank(self) -> int:
        return _TIER_RANK[self]


_TIER_RANK = {Tier.LOW: 0, Tier.MODERATE: 1, Tier.EXCELLENT: 2}


def customer_engagement_rate(counts: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """CER = sum of n_i * w_i over the weighted types. Unweighted types add nothing."""
    return sum(n * weights[t] for t, n in counts.items() if t in weights)


def engagement_component(count: float, target: float) -> float:
    """m_k = 100 * min(1, n_k / target_k): one type's normalised contribution to ES."""
    return 100.0 * min(1.0, count / target) if target > 0 else 0.0


def engagement_score(
    counts: Mapping[str, float], weights: Mapping[str, float], targets: Mapping[str, float],
    total_weight: float | None = None,
) -> float:
    """ES = sum(w_k * m_k) / sum(w_k) over every weighted type, in 0..100.

    The common "sum of weighted engagement metrics / number of metrics" is this formula
    when the weights average 1; normalising by the weight sum keeps ES on 0..100 for
    any weight scale. A weighted type with no events counts as m_k = 0.
    """
    if total_weight is None:   # callers that score many customers pass it in (config.scoring.total_weight)
        total_weight = sum(w for w in weights.values() if w > 0)
    if total_weight <= 0:
        return 0.0
    # only the types with events: a zero term changes no exact sum, and a customer has few types
    weighted = math.fsum(weights[t] * engagement_component(n, targets[t])
                         for t, n in counts.items() if n and weights.get(t, 0) > 0)
    return min(100.0, max(0.0, weighted / total_weight))


def tier(score: float, excellent: float = 80.0, moderate: float = 60.0) -> Tier:
    """By default 80-100 excellent, 60-79 moderate, below 60 low (boundaries inclusive upward)."""
    if score >= excellent:
        return Tier.EXCELLENT
    if score >= moderate:
        return Tier.MODERATE
    return Tier.LOW


def decayed_engagement(weighted_by_age: Iterable[tuple[float, float]], half_life: float) -> float:
    """Sum of weighted counts, each halved per `half_life` of its age: [(weighted_count, age)]."""
    return math.fsum(value * 0.5 ** (max(age, 0.0) / half_life) for value, age in weighted_by_age)


# --- loyalty: the active engagement rate (AER) ---------------------------------------------


class Band(StrEnum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


def active_engagement_rate(active: float, total: float) -> float:
    """AER = active engaged members / total loyalty members x 100; no members -> 0."""
    return _percent(active, total)


def aer_band(rate: float, low_below: float = 15.0, high_above: float = 25.0) -> Band:
    """AER bands, by default: <15 low, 15-25 moderate (both ends inclusive), >25 high."""
    if rate < low_below:
        return Band.LOW
    if rate > high_above:
        return Band.HIGH
    return Band.MODERATE


# --- usage -------------------------------------------------------------------------------


def stickiness(dau: float, mau: float) -> float:
    """DAU / MAU as a percentage (0-100)."""
    return _percent(dau, mau)


def feature_usage_rate(feature_users: float, active_users: float) -> float:
    """Users of a feature / active users x 100."""
    return _percent(feature_users, active_users)


def week_one_engagement(activated: float, new_members: float) -> float:
    """New members active in their first 7 days / new members x 100."""
    return _percent(activated, new_members)


def visit_frequency(visits: float, customers: float) -> float:
    """Page visit frequency (#16): visits / customers (a visit is a session started; the
    customers are those with any event in the same window); no customers -> 0."""
    return _ratio(visits, customers)


def pages_per_session(page_views: float, sessions: float) -> float:
    return _ratio(page_views, sessions)


def actions_per_session(actions: float, sessions: float) -> float:
    return _ratio(actions, sessions)


def average_session_duration(total_seconds: float, sessions: float) -> float:
    """Mean seconds per ended session."""
    return _ratio(total_seconds, sessions)


def bounce_rate(bounces: float, sessions: float) -> float:
    """Bounced sessions / sessions x 100."""
    return _percent(bounces, sessions)


def activation_rate(activated: float, sessions: float) -> float:
    """Activation rate (#33): ended sessions in which the customer took an action / ended sessions x 100.

    A definition sometimes given divides "interactions that resulted in an action" by all
    interactions; the interaction that can end in an action or not is a visit, so the standard web reading
    is used: the share of sessions with at least one `action`. No sessions -> 0.
    """
    return _percent(activated, sessions)


def abandonment_rate(abandoned: float, sessions: float) -> float:
    """Abandonment rate (#35): ended sessions left without an action after more than one page / sessions x 100.

    Distinguished from bounce: a bounce leaves after one page (or none) without an action;
    an abandonment browsed further and still left without one. Bounce, abandonment and
    activation rates add up to 100 % of ended sessions. No sessions -> 0.
    """
    return _percent(abandoned, sessions)


# --- membership over a period: retention, churn, turnover, lifespan ---------------------------


def retention_rate(start: float, end: float, new: float) -> float:
    """CRR = (E - N) / S x 100: S members at start, E at end, N new during; S = 0 -> 0."""
    return _percent(end - new, start)


def churn_rate(lost: float, start: float) -> float:
    """Members lost during the period / members at start x 100; S = 0 -> 0."""
    return _percent(lost, start)


def turnover_rate(lost: float, start: float, end: float) -> float:
    """Turnover rate (#29): members lost during the period / the period's average members ((S + E) / 2) x 100.

    Beside churn (lost / S): turnover measures the losses against the membership the period
    actually had, so a growing base shows a lower turnover than churn. No members -> 0.
    """
    return _percent(lost, (start + end) / 2)


def expected_lifespan(churn_rate_percent: float, max_periods: float) -> float:
    """Expected customer lifespan in periods = 1 / churn, capped when churn is (near) 0."""
    if churn_rate_percent <= 0:
        return max_periods
    return min(max_periods, 100.0 / churn_rate_percent)


# --- voice of customer --------------------------------------------------------------------


def nps(scores: Iterable[float] | Mapping[int, int]) -> float:
    """% promoters (9-10) - % detractors (0-6), -100..100; answers 0..10; none -> 0."""
    counts = _histogram(scores, 0, 10, "NPS")
    total = sum(counts.values())
    promoters = sum(n for s, n in counts.items() if s >= 9)
    detractors = sum(n for s, n in counts.items() if s <= 6)
    return _percent(promoters, total) - _percent(detractors, total)


def csat(scores: Iterable[float] | Mapping[int, int]) -> float:
    """% of answers 4-5 on a 1-5 scale (standard CSAT; the "%3-5 minus %1-2" variant is not used)."""
    counts = _histogram(scores, 1, 5, "CSAT")
    return _percent(sum(n for s, n in counts.items() if s >= 4), sum(counts.values()))


def ces(scores: Iterable[float] | Mapping[int, int]) -> float:
    """Mean effort score on the 1-7 scale (standard CES; a percentage variant is not used)."""
    counts = _histogram(scores, 1, 7, "CES")
    return _ratio(sum(s * n for s, n in counts.items()), sum(counts.values()))


def csat_across_channels(channels: Mapping[str, tuple[Mapping[int, int], float]]) -> float:
    """Overall CSAT (#12): each channel's CSAT weighted by its share of the customer
    interactions, over the channels that have CSAT answers; `channels` maps a channel to
    (its CSAT histogram, its interactions). No channel with both -> 0.

    A channel without answers has no CSAT to weight, so the shares are taken among the
    channels that have one (the weights add up to 1).
    """
    rated = [(csat(histogram), interactions) for histogram, interactions in channels.values()
             if interactions > 0 and sum(histogram.values()) > 0]
    return _ratio(math.fsum(score * interactions for score, interactions in rated),
                  math.fsum(interactions for _, interactions in rated))


def sentiment_score(positive: float, negative: float, total: float) -> float:
    """(positive - negative) / total x 100, -100..100; no mentions -> 0."""
    return _percent(positive - negative, total)


# --- marketing ----------------------------------------------------------------------------


def conversion_rate(conversions: float, visitors: float) -> float:
    return _percent(conversions, visitors)


def click_through_rate(clicks: float, impressions: float) -> float:
    return _percent(clicks, impressions)


def open_rate(opens: float, delivered: float) -> float:
    return _percent(opens, delivered)


def share_of_voice(brand_searches: float, competitor_searches: float) -> float:
    """Search share of voice (#27): searches for the brand / searches for the brand and
    its competitors x 100; none -> 0."""
    return _percent(brand_searches, brand_searches + competitor_searches)


def brand_search_rate(brand_searches: float, interactions: float) -> float:
    """Brand searches as some define #27: brand searches / all customer interactions x 100; none -> 0."""
    return _percent(brand_searches, interactions)


# --- commerce -----------------------------------------------------------------------------


def arpu(revenue: float, customers: float) -> float:
    """Average revenue per user."""
    return _ratio(revenue, customers)


def average_transaction_value(revenue: float, transactions: float) -> float:
    return _ratio(revenue, transactions)


def purchase_frequency(transactions: float, customers: float) -> float:
    """Transactions per purchasing customer in the period."""
    return _ratio(transactions, customers)


def customer_lifetime_value(avg_purchase_value: float, purchase_frequency: float, lifespan: float) -> float:
    """CLV = average purchase value x purchase frequency x expected lifespan."""
    return avg_purchase_value * purchase_frequency * lifespan


# --- support ------------------------------------------------------------------------------


def first_contact_resolution(first_contact: float, resolved: float) -> float:
    """First-contact resolutions / resolved tickets x 100."""
    return _percent(first_contact, resolved)


def average_handle_time(total_seconds: float, tickets: float) -> float:
    """Mean handle seconds per ticket."""
    return _ratio(total_seconds, tickets)


# --- score distribution ------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    values = list(values)
    return float(statistics.median(values)) if values else 0.0


def mean(values: Iterable[float]) -> float:
    """Exactly rounded (fsum), so the result does not depend on the order of the values."""
    values = list(values)
    return math.fsum(values) / len(values) if values else 0.0


def weighted_mean(values: Iterable[float], weights: Iterable[float] | None) -> float:
    """Σ w·v / Σ w, exactly rounded (fsum); the plain `mean` when `weights` is None or sums to 0."""
    values = list(values)
    if weights is None:
        return mean(values)
    weights = list(weights)
    total = math.fsum(weights)
    return math.fsum(w * v for w, v in zip(weights, values)) / total if total > 0 else mean(values)


def mean_of_scaled(total: int, scale: int, count: int) -> float:
    """Mean of `count` values whose sum is `total` in units of 1/`scale` (an exact integer sum)."""
    return total / scale / count if count > 0 else 0.0


def share_of(part: int, whole: int) -> float:
    """% of a whole that a part is."""
    return _percent(part, whole)


def share_below(values: Iterable[float], benchmark: float) -> float:
    """% of values strictly below the benchmark (e.g. CER below par)."""
    values = list(values)
    return _percent(sum(1 for v in values if v < benchmark), len(values))
