"""Business KPIs over every customer (docs/scores-and-kpis.md), computed from customer states.

This is the reference computation: the live pipeline keeps the same quantities as
shared aggregates in Redis, and its gauges must equal what this returns for the same
accepted events and the same `as_of`. A field's #N is the metric's row in the 37-metric
catalogue of docs/scores-and-kpis.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from scoring import formulas
from scoring.catalogue import PASSIVE_TYPES, SENTIMENTS, SURVEY_SCALES
from scoring.config import Config
from scoring.contributions import (
    ANY_FEATURE,
    FCR_KEY,
    OTHER,
    channel_key,
    channel_survey_key,
    count_key,
    labels,
    scan_device_key,
    scan_location_key,
    sentiment_key,
    survey_key,
    value_key,
    valued_key,
)
from scoring.events import VALUE_SCALE
from scoring.scores import MAU_WINDOW_MS, score_card, was_activated
from scoring.standing import ES_SCALE, es_micro
from scoring.state import ACTIVATED_SESSIONS, BOUNCES, SESSIONS, CustomerState
from scoring.timeutil import DAY
from scoring.windows import window_start_bucket, window_start_ms


@dataclass(frozen=True, slots=True)
class BusinessKpis:
    as_of_ms: int
    # loyalty
    members: int
    active_members: int
    aer: float
    aer_band: str
    # usage
    dau: int
    wau: int
    mau: int
    stickiness: float
    feature_usage: dict[str, float]
    week_one_engagement: float
    new_members: int
    # membership over the retention period
    members_at_start: int
    members_new: int
    members_lost: int
    retention_rate: float
    churn_rate: float
    turnover_rate: float                # #29: lost / average members over the retention period
    # voice of customer
    nps: float
    nps_responses: int
    csat: float
    csat_responses: int
    csat_overall: float                 # #12: CSAT per channel weighted by its share of interactions
    csat_by_channel: dict[str, float]
    channel_interactions: dict[str, int]
    ces: float
    ces_responses: int
    social_sentiment: float
    review_sentiment: float
    # marketing and sessions
    conversion_rate: float
    click_through_rate: float
    open_rate: float
    sessions: int
    visit_frequency: float              # #16: visits (sessions started) / customers in the window
    impressions: int                    # #25-26, #31, #32, #34, #36: window totals of the interaction
    clicks: int
    likes: int
    shares: int
    comments: int
    follows: int
    customer_interactions: int          # events the customer initiated (not the passive types)
    brand_searches: int                 # #27, with share of voice
    competitor_searches: int
    share_of_voice: float
    brand_search_rate: float
    scans: int                          # #13: digital business card scans, by device and place
    scans_by_device: dict[str, int]
    scans_by_location: dict[str, int]
    bounce_rate: float
    activation_rate: float              # #33: sessions with an action / sessions
    abandonment_rate: float             # #35: sessions left after 2+ pages without an action
    pages_per_session: float
    actions_per_session: float
    average_session_duration: float
    # commerce
    revenue: float
    transactions: int
    purchasers: int
    customers_in_window: int
    arpu: float
    average_transaction_value: float
    purchase_frequency: float
    customer_lifetime_value: float
    # support
    first_contact_resolution: float
    average_handle_time: float
    # score distribution
    scored_customers: int
    tier_counts: dict[str, int] = field(default_factory=dict)
    mean_es: float = 0.0
    median_es: float = 0.0
    mean_cer: float = 0.0
    below_benchmark_share: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# The headline KPIs a trend keeps per bucket (the live page's small charts: GET /kpis/trend).
TREND_FIELDS = ("aer", "members", "active_members", "dau", "wau", "mau", "stickiness", "nps", "nps_responses",
                "csat", "mean_es", "tier_counts")


def trend_point(kpis: Mapping[str, object], config: Config) -> tuple[int, dict[str, object]]:
    """(bucket, point): what a trend records of KPIs computed for `kpis["as_of_ms"]`. The newest
    record in a bucket stands for it, so a bucket's point is its KPIs as last computed in it."""
    as_of = int(kpis["as_of_ms"])  # type: ignore[call-overload]
    return as_of // config.scoring.bucket_ms, {"as_of_ms": as_of, **{k: kpis[k] for k in TREND_FIELDS}}


def business_kpis(states: Iterable[CustomerState], as_of_ms: int, config: Config) -> BusinessKpis:
    states = list(states)
    bucket_ms = config.scoring.bucket_ms
    kpi_first = window_start_bucket(as_of_ms, config.kpis.window_ms, bucket_ms)
    score_first = window_start_bucket(as_of_ms, config.scoring.window_ms, bucket_ms)
    kpi_start_ms = kpi_first * bucket_ms
    aer_start = window_start_ms(as_of_ms, config.aer.window_ms, bucket_ms)
    day_start = window_start_ms(as_of_ms, DAY, bucket_ms)
    week_start = window_start_ms(as_of_ms, 7 * DAY, bucket_ms)
    month_start = window_start_ms(as_of_ms, MAU_WINDOW_MS, bucket_ms)
    period_start = as_of_ms - config.kpis.retention_period_ms
    cohort_until = as_of_ms - config.kpis.activation_period_ms
    cohort_after = cohort_until - config.kpis.retention_period_ms

    totals: dict[str, int] = {}
    members = active_members = dau = wau = mau = 0
    at_start = new = lost = 0
    cohort = activated = 0
    purchasers = customers_in_window = active_in_kpi_window = 0
    feature_users = {key: 0 for key in (ANY_FEATURE, *config.kpis.features)}
    scores: list[float] = []
    cers: list[float] = []
    tier_counts = {t.value: 0 for t in formulas.Tier}

    for state in states:
        in_kpi_window = in_score_window = False
        bought = False
        for bucket, counters in state.buckets.items():
            if bucket >= score_first and counters:
                in_score_window = True
            if bucket < kpi_first or not counters:
                continue
            in_kpi_window = True
            for key, amount in counters.items():
                totals[key] = totals.get(key, 0) + amount
            bought = bought or counters.get(count_key("purchase"), 0) > 0
        customers_in_window += in_kpi_window
        purchasers += bought

        member_now = state.is_member(as_of_ms)
        last_active = state.last_active_ms if state.last_active_ms is not None else -1
        members += member_now
        if member_now and state.last_aer_ms is not None and state.last_aer_ms >= aer_start:
            active_members += 1
        dau += last_active >= day_start
        wau += last_active >= week_start
        mau += last_active >= month_start
        active_in_kpi_window += last_active >= kpi_start_ms
        for key in feature_users:
            if state.features.get(key, -1) >= kpi_start_ms:
                feature_users[key] += 1

        member_then = state.is_member(period_start)
        at_start += member_then
        new += member_now and not member_then
        lost += member_then and not member_now
        for joined in state.joins_between(cohort_after, cohort_until):
            cohort += 1
            activated += was_activated(state, joined, config, config.kpis.activation_period_ms)

        if member_now or in_score_window:
            card = score_card(state, as_of_ms, config, detail=False)
            scores.append(card.es)
            cers.append(card.cer)
            tier_counts[card.tier.value] += 1

    sessions, bounces = totals.pop(SESSIONS, 0), totals.pop(BOUNCES, 0)
    return kpis_from(Aggregates(
        sums={
            "members": members, "active_members": active_members, "members_at_start": at_start,
            "members_new": new, "members_lost": lost, "cohort": cohort, "activated": activated,
            "customers_in_window": customers_in_window, "purchasers": purchasers, "scored": len(scores),
            **{f"tier.{t}": c for t, c in tier_counts.items()},
            "below_benchmark": sum(1 for c in cers if c < config.scoring.benchmark_cer),
            "es_micro": sum(es_micro(e) for e in scores), "cer": int(sum(cers)),
        },
        totals=totals, sessions=sessions, bounces=bounces, dau=dau, wau=wau, mau=mau,
        active_in_kpi_window=active_in_kpi_window, feature_users=feature_users, median_es=formulas.median(scores),
    ), as_of_ms, config)


@dataclass(frozen=True, slots=True)
class Aggregates:
    """Everything the business KPIs are computed from: sums over customers and over buckets.

    :func:`business_kpis` gathers them by visiting every customer (the reference); the live
    pipeline keeps them incrementally (standings summed per shard, per-bucket counters,
    sorted sets of last activity) and hands them to :func:`kpis_from` the same way.
    """

    sums: Mapping[str, int]             # scoring.standing.SUMS over customers
    totals: Mapping[str, int]           # per-bucket counters summed over the KPI window
    sessions: int                       # ended sessions anchored in the KPI window
    bounces: int
    dau: int
    wau: int
    mau: int
    active_in_kpi_window: int
    feature_users: Mapping[str, int]
    median_es: float


def kpis_from(agg: Aggregates, as_of_ms: int, config: Config) -> BusinessKpis:
    """The business KPIs from their aggregates (the one home of how each KPI is put together)."""
    totals, sums = agg.totals, agg.sums
    members, at_start, new, lost = sums.get("members", 0), sums.get("members_at_start", 0), \
        sums.get("members_new", 0), sums.get("members_lost", 0)
    active_members, scored = sums.get("active_members", 0), sums.get("scored", 0)
    sessions, bounces = agg.sessions, agg.bounces
    dau, wau, mau = agg.dau, agg.wau, agg.mau
    cohort, activated = sums.get("cohort", 0), sums.get("activated", 0)
    purchasers, customers_in_window = sums.get("purchasers", 0), sums.get("customers_in_window", 0)
    tier_counts = {t.value: sums.get(f"tier.{t.value}", 0) for t in formulas.Tier}
    feature_users = {key: agg.feature_users.get(key, 0) for key in (ANY_FEATURE, *config.kpis.features)}

    def n(type_name: str) -> int:
        return totals.get(count_key(type_name), 0)

    def histogram(survey: str, channel: str | None = None) -> dict[int, int]:
        low, high = SURVEY_SCALES[survey]
        return {s: totals.get(survey_key(survey, s) if channel is None else channel_survey_key(channel, s), 0)
                for s in range(low, high + 1)}

    def sentiment(type_name: str) -> float:
        counts = {s: totals.get(sentiment_key(type_name, s), 0) for s in SENTIMENTS}
        return formulas.sentiment_score(counts["positive"], counts["negative"], sum(counts.values()))

    aer = formulas.active_engagement_rate(active_members, members)
    churn = formulas.churn_rate(lost, at_start)
    revenue = totals.get(value_key("purchase"), 0) / VALUE_SCALE
    transactions = n("purchase")
    atv = formulas.average_transaction_value(revenue, transactions)
    frequency = formulas.purchase_frequency(transactions, purchasers)
    nps_h, csat_h, ces_h = histogram("nps_response"), histogram("csat_response"), histogram("ces_response")
    channels = {c: (histogram("csat_response", c), totals.get(channel_key(c), 0))
                for c in (*config.kpis.channels, OTHER)}
    activated_sessions = totals.get(ACTIVATED_SESSIONS, 0)
    brand, competitor = n("brand_search"), n("competitor_search")
    interactions = sum(n(t) for t in config.known_types - PASSIVE_TYPES)

    return BusinessKpis(
        as_of_ms=as_of_ms,
        members=members,
        active_members=active_members,
        aer=aer,
        aer_band=formulas.aer_band(aer, config.aer.low_below, config.aer.high_above).value,
        dau=dau,
        wau=wau,
        mau=mau,
        stickiness=formulas.stickiness(dau, mau),
        feature_usage={k: formulas.feature_usage_rate(v, agg.active_in_kpi_window) for k, v in feature_users.items()},
        week_one_engagement=formulas.week_one_engagement(activated, cohort),
        new_members=cohort,
        members_at_start=at_start,
        members_new=new,
        members_lost=lost,
        retention_rate=formulas.retention_rate(at_start, members, new),
        churn_rate=churn,
        turnover_rate=formulas.turnover_rate(lost, at_start, members),
        nps=formulas.nps(nps_h),
        nps_responses=sum(nps_h.values()),
        csat=formulas.csat(csat_h),
        csat_responses=sum(csat_h.values()),
        csat_overall=formulas.csat_across_channels(channels),
        csat_by_channel={c: formulas.csat(h) for c, (h, _) in channels.items()},
        channel_interactions={c: i for c, (_, i) in channels.items()},
        ces=formulas.ces(ces_h),
        ces_responses=sum(ces_h.values()),
        social_sentiment=sentiment("social_mention"),
        review_sentiment=sentiment("review"),
        conversion_rate=formulas.conversion_rate(n("conversion"), n("session_start")),
        click_through_rate=formulas.click_through_rate(n("ad_click"), n("ad_impression")),
        open_rate=formulas.open_rate(n("email_open"), n("email_delivered")),
        sessions=sessions,
        visit_frequency=formulas.visit_frequency(n("session_start"), customers_in_window),
        impressions=n("ad_impression"),
        clicks=n("ad_click"),
        likes=n("like"),
        shares=n("share"),
        comments=n("comment"),
        follows=n("follow"),
        customer_interactions=interactions,
        brand_searches=brand,
        competitor_searches=competitor,
        share_of_voice=formulas.share_of_voice(brand, competitor),
        brand_search_rate=formulas.brand_search_rate(brand, interactions),
        scans=n("scan"),
        scans_by_device={d: totals.get(scan_device_key(d), 0) for d in labels(config.kpis.scan_devices)},
        scans_by_location={p: totals.get(scan_location_key(p), 0) for p in labels(config.kpis.scan_locations)},
        bounce_rate=formulas.bounce_rate(bounces, sessions),
        activation_rate=formulas.activation_rate(activated_sessions, sessions),
        abandonment_rate=formulas.abandonment_rate(sessions - bounces - activated_sessions, sessions),
        pages_per_session=formulas.pages_per_session(n("page_view"), n("session_start")),
        actions_per_session=formulas.actions_per_session(n("action"), n("session_start")),
        average_session_duration=formulas.average_session_duration(
            totals.get(value_key("session_end"), 0) / VALUE_SCALE, totals.get(valued_key("session_end"), 0)
        ),
        revenue=revenue,
        transactions=transactions,
        purchasers=purchasers,
        customers_in_window=customers_in_window,
        arpu=formulas.arpu(revenue, customers_in_window),
        average_transaction_value=atv,
        purchase_frequency=frequency,
        customer_lifetime_value=formulas.customer_lifetime_value(
            atv, frequency, formulas.expected_lifespan(churn, config.kpis.max_lifespan_periods)
        ),
        first_contact_resolution=formulas.first_contact_resolution(totals.get(FCR_KEY, 0), n("ticket_resolved")),
        average_handle_time=formulas.average_handle_time(
            totals.get(value_key("ticket_resolved"), 0) / VALUE_SCALE, totals.get(valued_key("ticket_resolved"), 0)
        ),
        scored_customers=scored,
        tier_counts=tier_counts,
        mean_es=formulas.mean_of_scaled(sums.get("es_micro", 0), ES_SCALE, scored),
        median_es=agg.median_es,
        mean_cer=formulas.mean_of_scaled(sums.get("cer", 0), 1, scored),
        below_benchmark_share=formulas.share_of(sums.get("below_benchmark", 0), scored),
    )
