"""Prometheus metrics: pipeline counters per worker, business KPIs from the shared aggregates.

Business KPI gauges are computed from the shared aggregates in Redis (at most once per
ENGAGE_KPI_INTERVAL_S) and read at scrape time, so every worker reports the same values
and a sum over workers never double-counts a customer. Labels are bounded: reason,
rule, window, tier, band, survey, source, type; feature, channel, device and location
from configured allow-lists (others are "other") — never a customer or account id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from scoring.account_alerts import AccountRule
from scoring.alerts import Rule
from scoring.reasons import Reason


@dataclass(frozen=True)
class KpiGauge:
    name: str                      # without the engagement_ prefix
    help: str
    field: str                     # BusinessKpis field
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class KpiFamily:
    """A mapping-valued BusinessKpis field as one gauge per key, the key as `label`."""

    name: str                      # without the engagement_ prefix
    help: str
    field: str
    label: str


KPI_GAUGES: tuple[KpiGauge, ...] = (
    KpiGauge("active_engagement_rate_percent", "Active members / members x 100", "aer"),
    KpiGauge("members", "Current loyalty members", "members"),
    KpiGauge("active_members", "Members with points activity in the AER window", "active_members"),
    KpiGauge("active_customers", "Unique active customers in the window", "dau", {"window": "1d"}),
    KpiGauge("active_customers", "Unique active customers in the window", "wau", {"window": "7d"}),
    KpiGauge("active_customers", "Unique active customers in the window", "mau", {"window": "30d"}),
    KpiGauge("stickiness_percent", "DAU / MAU x 100", "stickiness"),
    KpiGauge("retention_rate_percent", "(E - N) / S x 100 over the retention period", "retention_rate"),
    KpiGauge("churn_rate_percent", "Members lost / members at period start x 100", "churn_rate"),
    KpiGauge("turnover_rate_percent", "Members lost / average members over the period x 100", "turnover_rate"),
    KpiGauge("members_period_start", "Members at the start of the retention period", "members_at_start"),
    KpiGauge("members_new", "Members now who were not members at the period start", "members_new"),
    KpiGauge("members_lost", "Members at the period start who are no longer members", "members_lost"),
    KpiGauge("week_one_engagement_percent", "New members active in their first 7 days x 100", "week_one_engagement"),
    KpiGauge("new_member_cohort", "New members in the week-1 cohort", "new_members"),
    KpiGauge("nps", "Net promoter score, -100..100", "nps"),
    KpiGauge("csat_percent", "% of CSAT answers 4-5", "csat"),
    KpiGauge("csat_overall_percent", "CSAT per channel weighted by the channel's share of interactions",
             "csat_overall"),
    KpiGauge("ces", "Mean customer effort score, 1-7", "ces"),
    KpiGauge("survey_responses", "Survey answers in the KPI window", "nps_responses", {"survey": "nps"}),
    KpiGauge("survey_responses", "Survey answers in the KPI window", "csat_responses", {"survey": "csat"}),
    KpiGauge("survey_responses", "Survey answers in the KPI window", "ces_responses", {"survey": "ces"}),
    KpiGauge("sentiment_score", "(positive - negative) / total x 100", "social_sentiment", {"source": "social"}),
    KpiGauge("sentiment_score", "(positive - negative) / total x 100", "review_sentiment", {"source": "reviews"}),
    KpiGauge("conversion_rate_percent", "Conversions / visits x 100", "conversion_rate"),
    KpiGauge("click_through_rate_percent", "Ad clicks / impressions x 100", "click_through_rate"),
    KpiGauge("open_rate_percent", "Email opens / delivered x 100", "open_rate"),
    KpiGauge("sessions", "Ended sessions in the KPI window", "sessions"),
    KpiGauge("bounce_rate_percent", "Bounced / ended sessions x 100", "bounce_rate"),
    KpiGauge("activation_rate_percent", "Ended sessions with an action / ended sessions x 100", "activation_rate"),
    KpiGauge("abandonment_rate_percent", "Ended sessions left after 2+ pages without an action / ended sessions "
             "x 100", "abandonment_rate"),
    KpiGauge("visit_frequency", "Visits (sessions started) / customers in the KPI window", "visit_frequency"),
    *(KpiGauge("interactions", "Interactions of the type in the KPI window", field, {"type": event_type})
      for field, event_type in (("impressions", "ad_impression"), ("clicks", "ad_click"), ("likes", "like"),
                                ("shares", "share"), ("comments", "comment"), ("follows", "follow"))),
    KpiGauge("customer_interactions", "Events the customers initiated in the KPI window (passive types "
             "excluded)", "customer_interactions"),
    KpiGauge("brand_searches", "Searches for the brand in the KPI window", "brand_searches"),
    KpiGauge("competitor_searches", "Searches for a competitor in the KPI window", "competitor_searches"),
    KpiGauge("share_of_voice_percent", "Brand searches / (brand + competitor searches) x 100", "share_of_voice"),
    KpiGauge("brand_search_rate_percent", "Brand searches / customer interactions x 100", "brand_search_rate"),
    KpiGauge("scans", "Digital business card scans in the KPI window", "scans"),
    KpiGauge("pages_per_session", "Page views per session", "pages_per_session"),
    KpiGauge("actions_per_session", "Actions per session", "actions_per_session"),
    KpiGauge("session_duration_seconds", "Mean session duration", "average_session_duration"),
    KpiGauge("revenue", "Purchase revenue in the KPI window", "revenue"),
    KpiGauge("transactions", "Purchases in the KPI window", "transactions"),
    KpiGauge("purchasers", "Customers with a purchase in the KPI window", "purchasers"),
    KpiGauge("customers_in_window", "Customers with any event in the KPI window", "customers_in_window"),
    KpiGauge("arpu", "Revenue / customers in the window", "arpu"),
    KpiGauge("average_transaction_value", "Revenue / transactions", "average_transaction_value"),
    KpiGauge("purchase_frequency", "Transactions / purchasing customers", "purchase_frequency"),
    KpiGauge("customer_lifetime_value", "ATV x frequency x lifespan (1 / churn)", "customer_lifetime_value"),
    KpiGauge("first_contact_resolution_percent", "First-contact resolutions / resolved x 100",
             "first_contact_resolution"),
    KpiGauge("average_handle_time_seconds", "Handle seconds / resolved tickets", "average_handle_time"),
    KpiGauge("scored_customers", "Customers in the score distribution", "scored_customers"),
    KpiGauge("engagement_score_mean", "Mean engagement score (0-100)", "mean_es"),
    KpiGauge("engagement_score_median", "Median engagement score (0-100)", "median_es"),
    KpiGauge("cer_mean", "Mean customer engagement rate", "mean_cer"),
    KpiGauge("cer_below_benchmark_percent", "% of customers with CER below the benchmark", "below_benchmark_share"),
)

KPI_FAMILIES: tuple[KpiFamily, ...] = (
    KpiFamily("customers_by_tier", "Customers per engagement tier", "tier_counts", "tier"),
    KpiFamily("feature_usage_percent", "Users of the feature / active users x 100 ('*' = any)", "feature_usage",
              "feature"),
    KpiFamily("csat_by_channel_percent", "% of the channel's CSAT answers 4-5", "csat_by_channel", "channel"),
    KpiFamily("channel_interactions", "Customer interactions on the channel in the KPI window",
              "channel_interactions", "channel"),
    KpiFamily("scans_by_device", "Scans by device type in the KPI window", "scans_by_device", "device"),
    KpiFamily("scans_by_location", "Scans by location in the KPI window", "scans_by_location", "location"),
)

PREFIX = "engagement_"
disable_created_metrics()  # no *_created series: they double the output and nobody graphs them


class KpiCollector(Collector):
    """Yields the KPI gauges from the latest business KPIs handed to it (read at scrape time): of
    everyone, and of each segment with KPIs of its own as `engagement_segment_*{segment=...}` (apart
    from the whole population's names, so a sum over a name never adds a segment to the total)."""

    def __init__(self, reference_lines: Mapping[str, float]) -> None:
        self.latest: Mapping[str, object] | None = None
        self.segments: Mapping[str, Mapping[str, object]] = {}
        self.reference_lines = dict(reference_lines)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.latest
        if snap is None:
            return
        families: dict[str, GaugeMetricFamily] = {}

        def family(name: str, help_text: str, labels: list[str]) -> GaugeMetricFamily:
            if name not in families:
                families[name] = GaugeMetricFamily(PREFIX + name, help_text, labels=labels)
            return families[name]

        family("kpi_as_of_timestamp_seconds", "Event-time instant the KPIs are computed for", []).add_metric(
            [], float(snap["as_of_ms"]) / 1000.0)  # type: ignore[arg-type]
        lines = family("aer_reference_percent", "AER benchmark lines (industry reference values)", ["benchmark"])
        for name, value in sorted(self.reference_lines.items()):
            lines.add_metric([name], float(value))
        _add_kpis(family, snap, "", {})
        for segment, kpis in sorted(self.segments.items()):
            _add_kpis(family, kpis, "segment_", {"segment": segment})
        yield from families.values()


def _add_kpis(family: Callable[[str, str, list[str]], GaugeMetricFamily], snap: Mapping[str, object], prefix: str,
              extra: Mapping[str, str]) -> None:
    """One population's KPI gauges (`prefix` + name, with the `extra` labels first)."""
    for gauge in KPI_GAUGES:
        labels = {**extra, **(gauge.labels or {})}
        family(prefix + gauge.name, gauge.help, list(labels)).add_metric(list(labels.values()), float(snap[gauge.field]))  # type: ignore[arg-type]
    band = family(prefix + "aer_band", "1 for the current AER band (<15 low, 15-25 moderate, >25 high)", [*extra, "band"])
    for name in ("low", "moderate", "high"):
        band.add_metric([*extra.values(), name], 1.0 if snap["aer_band"] == name else 0.0)
    for kpi in KPI_FAMILIES:
        gauges = family(prefix + kpi.name, kpi.help, [*extra, kpi.label])
        for key, value in sorted(snap[kpi.field].items()):  # type: ignore[union-attr]
            gauges.add_metric([*extra.values(), key], float(value))


UNMAPPED_NAMES = 50          # distinct unmapped event names a worker labels one by one: a bounded label
OTHER_NAME = "other"
NAME_LABEL_LENGTH = 64


class Metrics:
    """Every metric a worker exports, on its own (injectable) registry."""

    def __init__(self, reference_lines: Mapping[str, float], registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.messages = Counter(PREFIX + "messages_consumed", "Messages read from the events topic", registry=r)
        self.consumed = Counter(PREFIX + "events_consumed", "Events read (a batch message holds many)", registry=r)
        self.processed = Counter(PREFIX + "events_processed", "Events accepted and applied to Redis", registry=r)
        self.deduplicated = Counter(PREFIX + "events_deduplicated", "Events seen before (counted once)", registry=r)
        self.rejected = Counter(PREFIX + "events_rejected", "Events sent to the dead-letter topic", ["reason"],
                                registry=r)
        self.alerts = Counter(PREFIX + "alerts", "Alerts published (customer and account rules)", ["rule"], registry=r)
        self.stale_alerts = Counter(PREFIX + "alerts_stale", "Alerts recorded and not sent: their condition began "
                                    "more than alerts.max_age before they were evaluated (a backfill, a replay, an "
                                    "outage)", ["rule"], registry=r)
        self.unmapped = Counter(PREFIX + "unmapped_events", "Segment track events dead-lettered because [mapping] "
                                f"names no type for them, by name (the first {UNMAPPED_NAMES} names; later ones "
                                f"as \"{OTHER_NAME}\")", ["event"], registry=r)
        self._unmapped_names: set[str] = set()
        self.latency = Histogram(PREFIX + "event_latency_seconds", "Event time to applied in Redis",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                          3600, 86400), registry=r)
        self.batch_size = Histogram(PREFIX + "batch_size", "Messages per processed batch",
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000), registry=r)
        self.lag = Gauge(PREFIX + "consumer_lag", "Messages behind the end of this worker's partitions", registry=r)
        self.assigned = Gauge(PREFIX + "assigned_partitions", "Events-topic partitions this worker owns", registry=r)
        self.assignments = Counter(PREFIX + "partition_assignments", "Partition assignments this worker received: "
                                   "one per consumer-group rebalance it took part in, its first join included",
                                   registry=r)
        self.due = Gauge(PREFIX + "due_customers", "Customers whose re-score is due now (after a config change: "
                         "all of them, until the background re-score is done)", registry=r)
        self.retries = Counter(PREFIX + "batch_retries", "Batches retried after a Redis or Kafka error", registry=r)
        self.conflicts = Counter(PREFIX + "redis_conflicts", "Optimistic transactions recomputed after a conflict",
                                 registry=r)
        self.redis_read_failures = Counter(PREFIX + "redis_read_failures", "Scrapes of /metrics whose Redis reads "
                                           "failed (KPI, due and outbox gauges kept their last values)", registry=r)
        self.redis_out_of_memory = Counter(PREFIX + "redis_out_of_memory_errors", "Redis writes refused at its "
                                           "maxmemory (OOM); the batch or sweep is retried", registry=r)
        self.redis_unreplicated = Counter(PREFIX + "redis_replica_waits_failed", "Redis writes fewer replicas than "
                                          "ENGAGE_REDIS_MIN_REPLICAS confirmed within the timeout; the batch or sweep "
                                          "is retried", registry=r)
        self.outbox = Gauge(PREFIX + "outbox_outputs", "Outputs recorded in Redis and not yet acknowledged by Kafka "
                            "(all workers of the key prefix)", registry=r)
        self.outbox_redriven = Counter(PREFIX + "outbox_redriven", "Outputs this worker published from the outbox "
                                       "after their writer did not see them acknowledged", registry=r)
        self.sweeps = Counter(PREFIX + "sweeps", "Due sweeps completed (re-scores of the customers time alone changed)",
                              registry=r)
        self.cache_reads = Counter(PREFIX + "state_cache_reads", "Customers a batch or sweep needed, by how they "
                                   "were read: hit (remembered, one HGET), miss (read whole), stale (remembered "
                                   "but written by another worker since: read whole)", ["result"], registry=r)
        self.cache_size = Gauge(PREFIX + "state_cache_customers", "Customers this worker keeps as it last wrote "
                                "them (ENGAGE_STATE_CACHE_CUSTOMERS)", registry=r)
        for result in ("hit", "miss", "stale"):
            self.cache_reads.labels(result=result)
        for reason in Reason:
            self.rejected.labels(reason=reason.value)
        for rule in (*Rule, *AccountRule):
            self.alerts.labels(rule=rule.value)
        for rule in Rule:
            self.stale_alerts.labels(rule=rule.value)
        self.kpi_gauges = KpiCollector(reference_lines)
        r.register(self.kpi_gauges)

    def count_unmapped(self, name: str | None) -> None:
        """One more unmapped track event of `name`, under its own label while fewer than UNMAPPED_NAMES
        names have one (a producer's typo must not grow the exposition without bound)."""
        label = (name or "")[:NAME_LABEL_LENGTH]
        if label not in self._unmapped_names:
            if len(self._unmapped_names) >= UNMAPPED_NAMES:
                label = OTHER_NAME
            else:
                self._unmapped_names.add(label)
        self.unmapped.labels(event=label).inc()
