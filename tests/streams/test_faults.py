"""Faults against the real local Kafka and Redis: the end state equals the pure core's, exactly.

Broker and Redis restarts run on a stack of this module's own, so they disturb no other test.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable

import orjson
import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError

from devstack import stack as local

from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, HOUR
from tests.streams.support import WorkerProcess, now_ms, pipeline_settings, redis_records, without_ids
from tests.streams.test_pipeline import MESSAGES, reference_for

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    """A Kafka and a Redis for this module alone: the restarts here must not reach other tests."""
    directory = tmp_path_factory.mktemp("own-stack")
    yield local.up(directory, log=print)
    local.down(directory, purge=True)


def generated(unique: str, seed: int) -> list:
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=seed, prefix=unique))
    return list(traffic.messages(MESSAGES, now_ms() - 5 * DAY, 5 * DAY - HOUR))


class PacedProducer(threading.Thread):
    """Sends at an even pace; idempotent, so a broker outage neither loses nor reorders.

    `sent` counts the records handed to the producer so far, so a test can tell that an outage
    began mid-stream; `error` keeps whatever ended the thread early, so a test can say why.
    """

    def __init__(self, stack, topic: str, values_keys: list[tuple[bytes, bytes]], seconds: float) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True)
        self.stack, self.topic, self.values_keys, self.seconds = stack, topic, values_keys, seconds
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.send_all()
        except BaseException as error:  # kept for the test's assertion, which names it
            self.error = error

    def send_all(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.stack.kafka_bootstrap, acks="all", linger_ms=1,
                                 enable_idempotence=True, delivery_timeout_ms=300_000)
        for key, value in self.values_keys:
            while True:
                try:
                    producer.send(self.topic, key=key or None, value=value)
                    break
                except KafkaError:   # raised before the record was queued (no metadata while the broker
                    time.sleep(0.5)  # is down): nothing was sent, so sending it again cannot duplicate it
            self.sent += 1
            time.sleep(self.seconds / len(self.values_keys))
        producer.flush()
        producer.close()

    def finish(self, timeout: float) -> None:
        """Waits for every record to be delivered; fails with the thread's own error if it had one."""
        self.join(timeout=timeout)
        assert self.error is None, f"the producer thread failed: {self.error!r}"
        assert not self.is_alive(), f"the producer had not delivered every record after {timeout} s"
        assert self.sent == len(self.values_keys)


def restart_mid_stream(stack, name: str, sending: PacedProducer, **restart) -> None:  # type: ignore[no-untyped-def]
    """Restarts a service that goes down while records are still being sent.

    Checked as the restart begins (it stops the service first), not after it: a slow start-up
    on a loaded machine can outlast the rest of the stream, and that is not a failure of the worker.
    """
    assert sending.sent < len(sending.values_keys), "the stream ended before the outage"
    local.restart(stack, name, **restart)


def flowing(stack, unique: str, start, seed: int, seconds: float, until: float,  # type: ignore[no-untyped-def]
            env: dict[str, str] | None = None):
    """A worker owning every partition, a paced stream of `seconds` to it, and `until` of it consumed."""
    settings = pipeline_settings(stack, unique)
    messages = generated(unique, seed)
    worker = start(stack, unique, "w1", env)
    worker.wait_until(lambda: owns_all_partitions(worker), "partitions")
    sending = PacedProducer(stack, settings.events_topic, [(m.key, m.value) for m in messages], seconds)
    sending.start()
    worker.wait_until(lambda: consumed(worker) >= MESSAGES * until, f"{until:.0%} of the stream")
    return worker, messages, sending


def consumed(worker: WorkerProcess) -> float:
    return worker.metrics()["engagement_events_consumed_total"]


def owns_all_partitions(worker: WorkerProcess) -> bool:
    return worker.metrics().get("engagement_assigned_partitions") == 4


def ends_like_the_core(stack, unique: str, worker: WorkerProcess, messages: list, timeout: float = 240,
                       records: Callable[[], dict] | None = None) -> None:
    """Waits until Redis holds exactly the core's state over `messages`; then the API and KPIs must agree.
    `records`: how to read the stored customers (default: the stack's single Redis)."""
    reference, _ = reference_for([m.value for m in messages], now_ms())
    read = records or (lambda: redis_records(stack, unique))

    last: dict[str, object] = {}

    def caught_up() -> bool:
        m = worker.metrics()
        last.update(lag=m.get("engagement_consumer_lag"), partitions=m.get("engagement_assigned_partitions"))
        if m.get("engagement_consumer_lag", 1) != 0 or m.get("engagement_assigned_partitions") != 4:
            return False
        states = read()
        last.update(missing=len(set(reference.customers) - set(states)), extra=len(set(states) - set(reference.customers)),
                    differing=sorted(c for c, s in states.items()
                                     if c in reference.customers and s != without_ids(reference.customers[c]))[:5])
        return sorted(states) == sorted(reference.customers) and all(
            s == without_ids(reference.customers[c]) for c, s in states.items())

    try:
        worker.wait_until(caught_up, "the worker to end exactly at the core's state", timeout=timeout)
    except AssertionError as failure:   # say which part never held: the lag, the partitions or the state
        raise AssertionError(f"last seen: {last}\n{failure}") from None

    def kpis_agree() -> bool:
        # a customer whose standing time changed (an activity leaving a window) counts once the
        # sweep re-scored it: exact again within a sweep interval
        at = now_ms()
        status, body = worker.get(f"/kpis?as_of={at}")
        return status == 200 and body == json.loads(orjson.dumps(reference.kpis(at).to_dict()))

    worker.wait_until(kpis_agree, "/kpis to equal the core's at the same instant", timeout=30)
    as_of = now_ms()
    for cid in list(reference.customers)[:25]:
        status, body = worker.get(f"/customers/{urllib.parse.quote(cid)}?as_of={as_of}")
        body.pop("alerts_active"), body.pop("why")
        assert status == 200 and body == json.loads(orjson.dumps(reference.customer(cid, as_of).to_dict()))
    worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness after the fault")


def test_a_worker_killed_mid_stream_and_restarted_ends_exactly_like_the_core(stack, unique, start):
    worker, messages, sending = flowing(stack, unique, start, seed=5, seconds=8, until=1 / 3)
    worker.process.send_signal(signal.SIGKILL)           # mid-stream, no goodbye
    worker.process.wait()
    assert sending.is_alive()                            # events were still flowing
    restarted = start(stack, unique, "w1-again")
    sending.finish(timeout=60)
    ends_like_the_core(stack, unique, restarted, messages)
    assert consumed(restarted) < MESSAGES                # the redelivered part was recognised, not counted twice


def test_a_second_worker_joining_and_leaving_mid_stream_ends_exactly_like_the_core(stack, unique, start):
    first, messages, sending = flowing(stack, unique, start, seed=6, seconds=30, until=1 / 10)
    second = start(stack, unique, "w2")
    second.wait_until(lambda: consumed(second) > 0 and 0 < second.metrics()["engagement_assigned_partitions"] < 4,
                      "the joining worker to take partitions and score")
    assert first.metrics()["engagement_assigned_partitions"] < 4      # the group really rebalanced
    assert sending.is_alive()                                          # ... while events flowed
    second.stop()                                                      # and it leaves, mid-stream
    assert sending.is_alive()
    first.wait_until(lambda: owns_all_partitions(first), "the first worker to take back every partition")
    sending.finish(timeout=60)
    ends_like_the_core(stack, unique, first, messages)


def test_a_killed_workers_partitions_are_consumed_again_within_15_s_by_the_survivor(stack, unique, start):
    # the default settings: the fail-over time is the session timeout's (ENGAGE_KAFKA_SESSION_TIMEOUT_S)
    first, messages, sending = flowing(stack, unique, start, seed=9, seconds=30, until=1 / 20)
    second = start(stack, unique, "w2")
    second.wait_until(lambda: consumed(second) > 0, "the second worker to take partitions and score")
    second.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    second.process.wait()
    taken = consumed(first)
    assert first.metrics()["engagement_assigned_partitions"] < 4         # the two had split the partitions
    first.wait_until(lambda: owns_all_partitions(first) and consumed(first) > taken,
                     "the survivor to own and consume the killed worker's partitions", timeout=60)
    pause_s = time.monotonic() - killed_at
    print(f"fail-over pause after a SIGKILL: {pause_s:.1f} s")   # shown with -s; docs/reliability.md has the figure
    assert pause_s < 15
    sending.finish(timeout=60)
    ends_like_the_core(stack, unique, first, messages)


def test_a_worker_restarted_in_place_with_a_group_instance_id_resumes_before_its_session_would_expire(
        stack, unique, start):
    """Static membership (ENGAGE_GROUP_INSTANCE_ID): the group hands a member that comes back under the same id
    its partitions at once. Without it the group waits for the dead member's session (30 s here) first.
    In place means the same web address too: Faust's assignment carries the worker's URL."""
    env = {"ENGAGE_GROUP_INSTANCE_ID": f"{unique}-w1", "ENGAGE_KAFKA_SESSION_TIMEOUT_S": "30"}
    worker, messages, sending = flowing(stack, unique, start, seed=11, seconds=30, until=1 / 10, env=env)
    worker.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    worker.process.wait()
    again = start(stack, unique, "w1-again", env, port=worker.port)
    again.wait_until(lambda: consumed(again) > 0, "the restarted worker to consume", timeout=90)
    pause_s = time.monotonic() - killed_at
    print(f"pause of a restart in place with static membership: {pause_s:.1f} s")   # docs/reliability.md
    assert pause_s < 20, pause_s   # start-up (~5-10 s) only, not the 30 s session
    assert sending.is_alive()
    sending.finish(timeout=60)
    ends_like_the_core(stack, unique, again, messages)


def test_a_broker_restart_under_a_running_worker_needs_no_human(own_stack, unique, start):
    worker, messages, sending = flowing(own_stack, unique, start, seed=7, seconds=20, until=1 / 4)
    restart_mid_stream(own_stack, "kafka", sending, down_s=5)          # producer and worker both cut off
    sending.finish(timeout=120)
    ends_like_the_core(own_stack, unique, worker, messages)
    assert worker.process.poll() is None                              # the same process, no restart by hand


def committed_offsets(stack, group: str) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """The consumer group's committed offset per partition (what a restarted worker would resume from)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="engage-test-offsets")
    try:
        offsets = admin.list_group_offsets(group)[group]
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic.endswith(".engagement.events")}
    finally:
        admin.close()


def settled_offsets(stack, group: str, quiet_s: float = 4.0, timeout: float = 30.0) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """The committed offsets once they have stopped moving for `quiet_s` (four commit intervals).

    What was applied before a fault is committed a little later, after its outputs are published: on
    a loaded machine that can take seconds, so a fixed wait would take a late commit for a wrong one."""
    deadline = time.monotonic() + timeout
    offsets, since = committed_offsets(stack, group), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"the committed offsets never settled: {offsets}"
        time.sleep(0.5)
        now = committed_offsets(stack, group)
        if now != offsets:
            offsets, since = now, time.monotonic()
    return offsets


def test_a_rebalance_while_a_chunks_redis_write_hangs_commits_nothing_past_what_was_applied(own_stack, unique,
                                                                                              start):
    """A batch whose Redis write waits longer than the session timeout causes no rebalance. And a partition
    revoked while its chunk is in flight: its offsets must not be committed before the chunk's effects are in
    Redis. Redis refuses writes for a while (CLIENT PAUSE ... WRITE: reads go on, the batch's write waits), a
    second worker joins meanwhile; no offset may move while nothing can be applied."""
    import redis

    first, messages, sending = flowing(own_stack, unique, start, seed=10, seconds=40, until=1 / 8)
    client = redis.Redis.from_url(own_stack.redis_url)
    pause_s = 12
    # first no rebalance at all: a batch waiting on Redis longer than the session timeout (10 s) is no dead worker
    joins = first.metrics()["engagement_partition_assignments_total"]
    client.execute_command("CLIENT", "PAUSE", pause_s * 1000, "WRITE")
    paused_at = time.monotonic()
    first.wait_until(lambda: time.monotonic() - paused_at > 2, "the batch in flight to reach the paused write")
    stuck = consumed(first)
    first.wait_until(lambda: time.monotonic() - paused_at > pause_s - 1, "the pause to near its end")
    assert consumed(first) == stuck, "a batch was applied while Redis refused writes: the test would prove nothing"
    first.wait_until(lambda: consumed(first) > stuck, "consumption to go on after the pause")
    assert first.metrics()["engagement_partition_assignments_total"] == joins and owns_all_partitions(first), \
        "a false rebalance"

    # then a rebalance while the chunk's write hangs
    pause_s = 20
    client.execute_command("CLIENT", "PAUSE", pause_s * 1000, "WRITE")
    paused_at = time.monotonic()
    try:
        # what was applied before the pause gets committed once its outputs are out; then nothing more can be
        before = settled_offsets(own_stack, unique, timeout=pause_s - 8)
        assert sum(before.values()) > 0
        second = start(own_stack, unique, "w2")
        samples = 0
        while time.monotonic() - paused_at < pause_s - 1:
            assert committed_offsets(own_stack, unique) == before, "an offset was committed past what was applied"
            samples += 1
            time.sleep(0.25)
        assert samples > 10 and sending.is_alive()
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
        client.close()
    split = lambda: 0 < first.metrics()["engagement_assigned_partitions"] < 4 and consumed(second) > 0  # noqa: E731
    second.wait_until(split, "the two workers to share the partitions once Redis takes writes again")
    sending.finish(timeout=60)
    second.stop()
    ends_like_the_core(own_stack, unique, first, messages)


def test_redis_killed_and_restarted_from_its_aof_then_lost_and_replayed(own_stack, unique, start, monkeypatch):
    from click.testing import CliRunner

    from streams.cli import main

    worker, messages, sending = flowing(own_stack, unique, start, seed=8, seconds=15, until=1 / 4)
    restart_mid_stream(own_stack, "redis", sending, down_s=3, kill=True)  # a crash: only the AOF survives
    sending.finish(timeout=60)
    ends_like_the_core(own_stack, unique, worker, messages)
    assert worker.metrics()["engagement_batch_retries_total"] > 0   # it did notice the outage
    worker.stop()
    live = redis_records(own_stack, unique)

    # Redis loss: everything flushed; `engage replay` rebuilds it from the events topic
    import redis

    client = redis.Redis.from_url(own_stack.redis_url)
    client.flushall()
    client.close()
    assert redis_records(own_stack, unique) == {}
    monkeypatch.setenv("ENGAGE_KAFKA_BOOTSTRAP", own_stack.kafka_bootstrap)
    monkeypatch.setenv("ENGAGE_REDIS_URL", own_stack.redis_url)
    result = CliRunner().invoke(main, ["replay", "--topic-prefix", f"{unique}.", "--key-prefix", unique])
    assert result.exit_code == 0, result.output
    rebuilt = redis_records(own_stack, unique)
    assert sorted(rebuilt) == sorted(live)
    assert all(rebuilt[c] == live[c] for c in live)
    ends_like_the_core(own_stack, unique, start(own_stack, unique, "w2"), messages)
