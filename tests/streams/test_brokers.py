"""A broker of a three-broker Kafka cluster lost under a running worker: replicated topics carry on.

The cluster (`engage stack up --brokers 3`) and a Redis are this module's own, started once and
stopped at the end, so no other test sees the outage or pays for three JVMs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from devstack import stack as local
from streams.settings import load_settings, prefixed_topics
from streams.worker.topics import ensure_topics
from tests.streams.support import consume_all
from tests.streams.test_faults import consumed, ends_like_the_core, flowing

pytestmark = [pytest.mark.services, pytest.mark.brokers]

# the controller fences a silent broker after its session (broker.session.timeout.ms, 9 s) and elects
# new leaders from the in-sync replicas; the clients then refresh their metadata: ~10 s, bound with room
PAUSE_BOUND_S = 30.0
DOWN_S = PAUSE_BOUND_S   # the broker stays down at least this long: progress within the bound is the replicas'


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three combined KRaft brokers + controllers and a Redis for this module alone."""
    directory = tmp_path_factory.mktemp("three-brokers")
    try:
        yield local.up(directory, brokers=3, log=print)
    finally:
        local.down(directory, purge=True)


def admin_of(cluster: local.Stack) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap, request_timeout_ms=5000,
                            client_id="test-brokers")


def described_everywhere(admin: KafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> list[dict]:
    """`describe_topics(names)` once the broker the admin asks knows every topic's partitions.

    `ensure_topics` waits until the broker it asked sees a leader for every partition; the other
    brokers learn of new topics from the KRaft metadata log a moment later, and this admin may ask
    one of them (a CI run saw a topic described with no partitions right after its creation).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(names)
        if all(t.get("partitions") and not t.get("error_code") for t in described) or time.monotonic() > deadline:
            return described
        time.sleep(0.1)


def test_the_cluster_has_three_brokers_and_new_topics_three_replicas_two_in_sync(cluster, unique):
    admin = admin_of(cluster)
    try:
        brokers = admin.describe_cluster()["brokers"]
        assert len(brokers) == 3 and not any(b.get("is_fenced") for b in brokers)
        assert sorted(cluster.kafka_bootstrap.split(",")) == sorted(
            f"127.0.0.1:{b['port']}" for b in brokers)
        settings = load_settings({"kafka_bootstrap": cluster.kafka_bootstrap, "redis_url": cluster.redis_url,
                                  **prefixed_topics(f"{unique}.")})
        assert set(ensure_topics(settings).values()) == {"created"}
        names = [settings.events_topic, settings.dlq_topic, settings.scores_topic, settings.alerts_topic]
        for topic in described_everywhere(admin, names):
            assert len(topic["partitions"]) == 4
            assert all(len(p["replica_nodes"]) == 3 and len(p["isr_nodes"]) == 3 for p in topic["partitions"])
        from kafka.admin import ConfigResource, ConfigResourceType

        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])["topic"]
        assert {name: configs[name]["min.insync.replicas"]["value"] for name in names} == dict.fromkeys(names, "2")
    finally:
        admin.close()


def test_up_again_reuses_the_three_brokers_and_refuses_to_change_their_number(cluster):
    directory = Path(cluster.directory)
    again = local.up(directory)
    assert [again.services[n].pid for n in local.BROKER_NAMES] == [cluster.services[n].pid for n in local.BROKER_NAMES]
    with pytest.raises(local.StackError, match="3-broker"):
        local.up(directory, brokers=1)
    status = local.status(directory)
    assert status["running"] and all(status["healthy"][n] for n in local.BROKER_NAMES)
    assert "kafka" not in status["services"]
    assert local.local_addresses(directory)["kafka_bootstrap"] == cluster.kafka_bootstrap


def busiest_partition(admin: KafkaAdminClient, cluster: local.Stack, topic: str) -> tuple[int, int]:
    """(partition, leader's node id) of the events partition holding the most records so far."""
    consumer = KafkaConsumer(bootstrap_servers=cluster.kafka_bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    partition = max(ends, key=lambda tp: ends[tp]).partition
    (described,) = admin.describe_topics([topic])
    leader = next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == partition)
    return partition, leader


def committed(reader: KafkaConsumer, tp: TopicPartition) -> int | None:
    """The group's committed offset of `tp` (None: none yet, or the cluster did not answer in time).

    Asked through a consumer of the group that never joins it: unlike the admin client, it finds the
    group's coordinator again when the broker that was the coordinator is the one lost.
    """
    try:
        return reader.committed(tp, timeout_ms=3000)
    except (KafkaError, OSError):
        return None


def test_the_leader_of_a_busy_partition_killed_mid_stream_loses_nothing_and_pauses_briefly(cluster, unique, start):
    worker, messages, sending = flowing(cluster, unique, start, seed=14, seconds=60, until=1 / 6)
    topic = f"{unique}.engagement.events"
    admin = admin_of(cluster)
    reader = KafkaConsumer(bootstrap_servers=cluster.kafka_bootstrap, group_id=unique, enable_auto_commit=False)
    outage: threading.Thread | None = None
    try:
        (faust_topic,) = admin.describe_topics([f"{unique}-__assignor-__leader"])   # Faust's own, made by the worker
        assert [len(p["replica_nodes"]) for p in faust_topic["partitions"]] == [3]
        partition, leader = busiest_partition(admin, cluster, topic)
        victim = local.BROKER_NAMES[leader - 1]          # node ids are 1..3 in the order of the names
        assert cluster.services[victim].port == next(
            b["port"] for b in admin.describe_cluster()["brokers"] if b["broker_id"] == leader)
        tp = TopicPartition(topic, partition)
        worker.wait_until(lambda: committed(reader, tp), "a committed offset of the busy partition")
        assert sending.sent < len(messages), "the stream ended before the broker was lost"
        # progress = a commit past the partition's end as the broker is lost: records only its new leader took
        # (a commit up to the end may be of records the worker had fetched before the kill)
        end = reader.end_offsets([tp])[tp]
        back = threading.Event()

        def lose_the_broker() -> None:
            local.restart(cluster, victim, kill=True, down_s=DOWN_S)
            back.set()

        outage = threading.Thread(target=lose_the_broker, daemon=True)
        killed_at = time.monotonic()
        outage.start()
        # the pause: until the busy partition's committed offset passes its end at the kill, i.e. its new
        # leader took the producer's writes and the worker consumed, applied and committed them; the
        # worker's consumed counter is sampled all the while, until the broker is back
        resumed_at: float | None = None
        resumed_while_down = False
        samples: list[tuple[float, float]] = []   # (time, events consumed so far)
        while resumed_at is None or outage.is_alive():
            assert time.monotonic() - killed_at < 180, "no progress, or the broker not back, within 180 s"
            samples.append((time.monotonic(), consumed(worker)))
            if resumed_at is None:
                offset = committed(reader, tp)
                if offset is not None and offset > end:
                    resumed_at, resumed_while_down = time.monotonic(), not back.is_set()
            time.sleep(0.2)
        assert back.is_set(), "the killed broker did not come back"
        pause_s, idle_s = resumed_at - killed_at, _longest_still(samples)
        print(f"\nbroker {victim} (leader of events partition {partition}) SIGKILLed, down {DOWN_S:.0f} s: "
              f"the partition committed again {pause_s:.1f} s after the kill "
              f"({'while the broker was still down' if resumed_while_down else 'only once it was back'}); "
              f"the worker consumed nothing at all for at most {idle_s:.1f} s; "
              f"the broker was back {samples[-1][0] - killed_at:.1f} s after the kill")
        assert pause_s < PAUSE_BOUND_S
        assert resumed_while_down, "progress waited for the killed broker: the partition was not replicated"
        sending.finish(timeout=180)
    finally:
        if outage is not None:
            outage.join(timeout=180)   # a broker started after the module's teardown would outlive it
        reader.close()
        admin.close()
    # the producer wrote every record exactly once (acks=all, idempotent), the worker counted each once
    written = Counter(consume_all(cluster, topic))
    assert written == Counter((m.key or None, m.value) for m in messages)
    ends_like_the_core(cluster, unique, worker, messages)
    assert worker.process.poll() is None                   # the same process throughout, no restart by hand
    print("broker RSS after the test: " + ", ".join(f"{name} {_rss_mb(cluster.services[name].pid)} MB"
                                                     for name in local.BROKER_NAMES))


def _rss_mb(pid: int | None) -> int:
    """A process's resident memory in MB (for the figures in docs/reliability.md)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) // 1024


def _longest_still(samples: list[tuple[float, float]]) -> float:
    """The longest time the consumed counter stood still across `samples` (time, count)."""
    longest, since = 0.0, samples[0]
    for at, count in samples[1:]:
        if count != since[1]:
            since = (at, count)
        longest = max(longest, at - since[0])
    return longest
