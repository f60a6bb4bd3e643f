"""Topic setup with kafka-python's admin client (outside the worker)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.security import kafka_options
from streams.settings import ENV, Settings, SettingsError

REPLICATED = 3   # ENGAGE_TOPIC_REPLICATION=auto: this many replicas once the cluster has the brokers


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def replication(settings: Settings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of new topics on a cluster of `brokers` brokers.

    `auto` replicates min(3, brokers) times. From 3 replicas on, a write acknowledged (acks=all)
    is on at least 2 brokers, so losing one loses nothing and writing goes on; with fewer, the
    least is 1 (2 of 2 would stop every write while either broker is down). Always set on the
    topic, so a broker default of 2 cannot refuse every write to a topic of 1 replica.
    """
    if settings.topic_replication == "auto":
        factor = min(REPLICATED, brokers)
    else:
        factor = int(settings.topic_replication)
        if factor > brokers:
            raise SettingsError(ENV["topic_replication"], f"is {factor}, but the Kafka cluster at "
                                f"{settings.kafka_bootstrap} has {brokers} broker(s)")
    return factor, 2 if factor >= 3 else 1


def cluster_replication(settings: Settings) -> tuple[int, int]:
    """`replication` on the cluster at `settings.kafka_bootstrap` (brokers down but registered count)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="engage-topics",
                             **kafka_options(settings))
    try:
        return replication(settings, _brokers(admin))
    finally:
        admin.close()


def _brokers(admin: KafkaAdminClient) -> int:
    """Every registered broker, fenced (down) ones too: `auto` must not shrink while one restarts."""
    return max(1, len(admin.describe_cluster()["brokers"]))


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
    """Create missing topics, replicated by `replication`, and wait until every partition has a leader.

    Returns {name: 'created' | 'exists'}; an existing topic is left as it is (its replicas too).
    Waiting matters: a consumer that subscribes to a brand-new topic before its partitions have
    leaders can sit idle until its next metadata refresh (minutes), which is what a worker
    started right after creation saw. Raises SettingsError (ENGAGE_TOPIC_REPLICATION) when more
    replicas are asked for than the cluster has brokers.
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="engage-topics",
                             **kafka_options(settings))
    try:
        factor, min_insync = replication(settings, _brokers(admin))
        existing = set(admin.list_topics())
        out: dict[str, str] = {}
        for spec in topic_specs(settings):
            if spec.name in existing:
                out[spec.name] = "exists"
                continue
            try:
                config = {**spec.config, "min.insync.replicas": str(min_insync)}
                admin.create_topics([NewTopic(spec.name, spec.partitions, factor, topic_configs=config)])
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
