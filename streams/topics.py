"""Topic setup with kafka-python's admin client (outside the worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.security import kafka_options
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


def ensure_topics(settings: Settings, ready_timeout_s: float = 60.0) -> dict[str, str]:
    """Create missing topics and wait until every partition has a leader.

    Returns {name: 'created' | 'exists'}. Waiting matters: a consumer that subscribes to a
    brand-new topic before its partitions have leaders can sit idle until its next
    metadata refresh (minutes), which is what a worker started right after creation saw.
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="engage-topics",
                             **kafka_options(settings))
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
        _wait_for_leaders(admin, list(out), ready_timeout_s)
        return out
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        missing = []
        for topic in admin.describe_topics(names):
            partitions = topic.get("partitions") or []
            if topic.get("error_code") or not partitions:
                missing.append(str(topic.get("name")))
            missing += [f"{topic.get('name')}[{p.get('partition_index')}]" for p in partitions
                        if p.get("error_code") or p.get("leader_id", -1) < 0]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic partitions without a leader after {timeout_s:.0f} s: {', '.join(missing[:8])}")
        time.sleep(0.2)
