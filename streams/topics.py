"""Topic setup with kafka-python's admin client (outside the worker)."""

from __future__ import annotations

from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.settings import Settings



@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Events are kept forever so `engage replay` can rebuild Redis, and stamped with the
    broker's append time, the clock of the time gates (so a replay decides like the live run).
    Scores are compacted."""
    n = settings.partitions
    return [
        TopicSpec(settings.events_topic, n, {"retention.ms": str(settings.events_retention_ms),
                                             "cleanup.policy": "delete", "message.timestamp.type": "LogAppendTime"}),
        TopicSpec(settings.dlq_topic, n, {"retention.ms": str(settings.dlq_retention_ms)}),
        TopicSpec(settings.scores_topic, n, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(settings.alerts_topic, n, {"retention.ms": str(settings.alerts_retention_ms)}),
    ]


def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create missing topics; returns {name: 'created' | 'exists'}."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="engage-topics")
    try:
        existing = set(admin.list_topics())
        out: dict[str, str] = {}
        for spec in topic_specs(settings):
            if spec.name in existing:
                out[spec.name] = "exists"
                continue
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.config)])
                out[spec.name] = "created"
            except TopicAlreadyExistsError:
                out[spec.name] = "exists"
        return out
    finally:
        admin.close()
