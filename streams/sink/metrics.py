"""What `engage alert-sink` exports to Prometheus."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

PREFIX = "engagement_"   # the product's metric namespace (the worker's metrics use the same)


class SinkMetrics:
    """What `engage alert-sink` exports: deliveries, failed attempts, skipped records, lag."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.delivered = Counter(PREFIX + "alert_webhook_delivered", "Alerts accepted by the webhook", registry=r)
        self.failures = Counter(PREFIX + "alert_webhook_failures", "Failed webhook attempts (retried)", registry=r)
        self.skipped = Counter(PREFIX + "alert_webhook_skipped", "Records on the alerts topic that are not alerts",
                               registry=r)
        self.not_sent = Counter(PREFIX + "alert_webhook_not_sent", "Customer alerts recorded and not sent: their "
                                "condition acknowledged or snoozed, or their route over its max_per_hour", ["reason"],
                                registry=r)
        self.digested = Counter(PREFIX + "alert_webhook_digested", "Customer alerts held for a route's daily digest",
                                registry=r)
        self.digests = Counter(PREFIX + "alert_webhook_digests", "Daily digests delivered", registry=r)
        self.lag = Gauge(PREFIX + "alert_sink_lag", "Alerts waiting in Kafka for delivery", registry=r)
        self.assigned = Gauge(PREFIX + "alert_sink_assigned_partitions", "Alerts-topic partitions this sink owns",
                              registry=r)
