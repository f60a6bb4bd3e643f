"""The worker's parts (`streams.worker.runtime.Runtime`: the batch lifecycle, progress, the sweep, health) without services: the real RedisStore
on an in-memory Redis (tests/streams/memory_redis.py) and a recording Kafka producer.

Quarantine, retries and the outbox as the worker runs them; the same behaviours through a real
worker process, Kafka and Redis are in test_poison.py, test_outbox.py and test_faults.py.
"""

from __future__ import annotations

import asyncio
import json

import aiokafka.errors
import orjson
import pytest

from scoring.config import Config, load_config
from streams.clock import now_ms
from streams.state.layout import Keys
from streams.worker.metrics import KPI_GAUGES, Metrics
from streams.worker.batch import Incoming
from streams.settings import load_settings
from streams.state.store import RedisStore
from streams.worker.runtime import Runtime
from tests.builders import CONFIG, ev
from tests.streams.memory_redis import MemoryRedis

SETTINGS = load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "redis://127.0.0.1:1/0"})


class RecordingProducer:
    """Faust's producer as the worker uses it: `await send(...)` returns a future of the ack.
    The first `failures` sends fail as a broker would (a timeout)."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.failures = failures

    async def send(self, topic, key, value, partition, timestamp, headers):  # type: ignore[no-untyped-def]
        ack = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            ack.set_exception(aiokafka.errors.KafkaTimeoutError())
        else:
            self.sent.append((topic, key, value))
            ack.set_result(None)
        return ack

    def on(self, topic: str) -> list[dict]:
        return [orjson.loads(value) for t, _, value in self.sent if t == topic]


def runtime(memory: MemoryRedis, producer: RecordingProducer, prefix: str = "w", config: Config = CONFIG) -> Runtime:
    worker = Runtime(SETTINGS, config, RedisStore(memory, Keys(prefix)), Metrics(config.aer.reference_lines),
                     producer=lambda: producer, consumer=lambda: None)

    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    worker.retry.sleep = no_wait
    # batches wait for the worker's config adoption, a task of the running app; these tests drive the
    # lifecycle without the app, on a prefix no other config writes (test_rolling_config.py covers it)
    worker.adoption.adopted.set()
    return worker


def batch(*events: dict, start_offset: int = 0) -> list[Incoming]:
    return [Incoming(json.dumps(e).encode(), str(e.get("customer_id", e.get("userId"))).encode(), "events", 0,
                     start_offset + i, now_ms())
            for i, e in enumerate(events)]


def test_a_batch_is_published_then_out_of_the_outbox():
    memory, producer = MemoryRedis(), RecordingProducer()
    worker = runtime(memory, producer)
    at = now_ms() - 60_000
    asyncio.run(worker.lifecycle.handle(batch(ev("c1", "like", at, event_id="e1"), ev("c2", "comment", at, event_id="e2"),
                                    {"customer_id": "c3", "type": "like"})))
    assert sorted(card["customer_id"] for card in producer.on(SETTINGS.scores_topic)) == ["c1", "c2"]
    [dead] = producer.on(SETTINGS.dlq_topic)
    assert dead["reason"] == "missing_field" and dead["source"]["offset"] == 2
    assert asyncio.run(worker.store.outbox_size()) == 0          # deleted once acknowledged
    assert worker.metrics.processed._value.get() == 2 and worker.progress.positions[("events", 0)] == 3


def test_a_publish_that_fails_is_retried_and_the_outputs_stay_in_the_outbox_meanwhile():
    memory, producer = MemoryRedis(), RecordingProducer(failures=2)
    worker = runtime(memory, producer)
    sizes = []
    original = worker.retry.sleep

    async def observe(delay: float) -> None:
        sizes.append(await worker.store.outbox_size())
        await original(delay)

    worker.retry.sleep = observe
    asyncio.run(worker.lifecycle.handle(batch(ev("c1", "like", now_ms() - 1000, event_id="e1"))))
    assert sizes and all(size >= 1 for size in sizes)           # recorded with the state, not yet acknowledged
    assert [card["customer_id"] for card in producer.on(SETTINGS.scores_topic)] == ["c1"]
    assert asyncio.run(worker.store.outbox_size()) == 0
    assert worker.metrics.retries._value.get() == 2 and not worker.retry.failing


def test_a_customer_the_worker_fails_on_every_time_is_quarantined_and_the_rest_scored():
    memory, producer = MemoryRedis(), RecordingProducer()
    memory._set(Keys("w").facts("broken"), b"0" * 19 + b"\xc1not a record")   # a corrupt stored customer
    worker = runtime(memory, producer)
    at = now_ms() - 60_000
    events = [ev(cid, "like", at + i, event_id=f"e{i}") for i, cid in enumerate(["ok1", "broken", "ok2"] * 2)]
    asyncio.run(worker.lifecycle.handle(batch(*events)))
    dead = producer.on(SETTINGS.dlq_topic)
    assert [d["reason"] for d in dead] == ["processing_error"] * 2
    assert {d["source"]["key"] for d in dead} == {"broken"} and all("FormatError" in d["detail"] for d in dead)
    assert sorted(c["customer_id"] for c in producer.on(SETTINGS.scores_topic)) == ["ok1", "ok1", "ok2", "ok2"]
    assert worker.metrics.processed._value.get() == 4
    assert worker.progress.positions[("events", 0)] == len(events)       # the partition moves on


class Assignment:
    """Faust's consumer as the metrics read it: two partitions, nothing behind."""

    def assignment(self) -> list:
        from faust.types import TP

        return [TP(SETTINGS.events_topic, 0), TP(SETTINGS.events_topic, 1)]

    def highwater(self, tp) -> int:  # type: ignore[no-untyped-def]
        return 0


def test_metrics_are_served_when_redis_cannot_answer_and_the_kpi_gauges_keep_their_values():
    memory = MemoryRedis()
    worker = runtime(memory, RecordingProducer())
    worker.progress.consumer = Assignment
    at = now_ms() - 1000
    asyncio.run(worker.lifecycle.handle(batch(ev("c1", "like", at, event_id="e1"), ev("c2", "comment", at, event_id="e2"))))
    before = asyncio.run(worker.health.metrics_payload()).decode()
    assert "engagement_assigned_partitions 2.0" in before and "engagement_redis_read_failures_total 0.0" in before

    async def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("Redis is down")

    worker.store.aggregates = refused
    worker.latest_kpis.interval_s = 0   # recompute on this scrape
    after = asyncio.run(worker.health.metrics_payload()).decode()
    assert "engagement_redis_read_failures_total 1.0" in after
    kpis = [f"engagement_{gauge.name}" for gauge in KPI_GAUGES]
    kpi_lines = lambda text: sorted(line for line in text.splitlines() if line.startswith(tuple(kpis)))  # noqa: E731
    assert kpi_lines(after) == kpi_lines(before) and "engagement_active_customers{window=\"1d\"} 2.0" in before


def test_a_sweep_records_the_buckets_kpi_trend_point_and_drops_points_past_the_kpi_window():
    from scoring.business import trend_point
    from streams.serve import api
    from tests.openapi_check import schema_errors

    memory, producer = MemoryRedis(), RecordingProducer()
    worker = runtime(memory, producer)
    at = now_ms() - 60_000
    asyncio.run(worker.lifecycle.handle(batch(ev("c1", "like", at, event_id="e1"), ev("c2", "nps_response", at, value=9))))
    stale = at // CONFIG.scoring.bucket_ms - 40                     # 40 days back: past the 30-day KPI window
    asyncio.run(worker.store.record_kpi_trend(stale, {"as_of_ms": 0}, 0))
    asyncio.run(worker.sweeper.sweep())
    body = asyncio.run(worker.latest_kpis.get())                    # the answer the sweep computed and recorded
    bucket, point = trend_point(body, CONFIG)
    assert point["dau"] == 2 and point["nps"] == 100.0
    assert asyncio.run(worker.store.kpi_trend()) == {bucket: orjson.loads(orjson.dumps(point))}
    answer = asyncio.run(api.kpi_trend(worker.store, CONFIG, body["as_of_ms"]))
    assert answer["points"] == [orjson.loads(orjson.dumps({"bucket": bucket, **point}))]
    assert schema_errors("GET", "/kpis/trend", 200, answer) == []


def test_a_sweep_records_each_segments_trend_point_and_the_gauges_show_each_segment():
    from scoring.business import trend_point
    from streams.serve import api

    config = load_config(overrides={"kpis": {"segments": ["smb", "enterprise"]}})
    worker = runtime(MemoryRedis(), RecordingProducer(), config=config)
    at = now_ms() - 60_000
    asyncio.run(worker.lifecycle.handle(batch(ev("c1", "like", at, segment="smb"), ev("c2", "like", at, segment="smb"),
                                              ev("c3", "nps_response", at, value=2, segment="enterprise"))))
    asyncio.run(worker.sweeper.sweep())
    whole, smb, enterprise = (asyncio.run(worker.latest_kpis.get(s)) for s in (None, "smb", "enterprise"))
    assert (whole["dau"], smb["dau"], enterprise["dau"]) == (3, 2, 1)
    assert (smb["segment"], enterprise["nps"], smb["nps"]) == ("smb", -100.0, 0.0)
    for segment, body in (("smb", smb), ("enterprise", enterprise)):
        bucket, point = trend_point(body, config)
        answer = asyncio.run(api.kpi_trend(worker.store, config, body["as_of_ms"], segment))
        assert answer["segment"] == segment and answer["points"] == [orjson.loads(orjson.dumps({"bucket": bucket, **point}))]
    with pytest.raises(api.ApiError, match="kpis.segments"):
        asyncio.run(api.kpi_trend(worker.store, config, at, "mid_market"))
    worker.progress.consumer = Assignment
    exposition = asyncio.run(worker.health.metrics_payload()).decode()
    assert 'engagement_segment_active_customers{segment="smb",window="1d"} 2.0' in exposition
    assert 'engagement_segment_nps{segment="enterprise"} -100.0' in exposition
    assert "engagement_active_customers{window=\"1d\"} 3.0" in exposition


def test_a_metrics_scrape_never_writes_to_redis():
    """A write on the /metrics path would hang every scrape while Redis refuses writes (CLIENT PAUSE
    WRITE, a full maxmemory): the scrape reads only; the KPI trend point is recorded by the sweep."""
    memory, producer = MemoryRedis(), RecordingProducer()
    worker = runtime(memory, producer)
    worker.progress.consumer = Assignment
    at = now_ms() - 60_000
    asyncio.run(worker.lifecycle.handle(batch(ev("c1", "like", at, event_id="e1"))))

    def refuse(*args, **kwargs):
        raise RuntimeError("a write during a scrape")

    for command in ("_hset", "_hdel", "_hincrby", "_zadd", "_sadd", "_lpush", "_apply"):
        setattr(memory, command, refuse)
    worker.latest_kpis.interval_s = 0          # a fresh KPI computation on this scrape
    payload = asyncio.run(worker.health.metrics_payload()).decode()
    assert "engagement_redis_read_failures_total 0.0" in payload and "engagement_active_customers" in payload


class Returned(Assignment):
    """Faust's consumer after partition 1 came back from another worker, which processed it up to
    offset 30 and committed that; nothing new since."""

    def __init__(self) -> None:
        from faust.types import TP

        self._committed_offset = {TP(SETTINGS.events_topic, 1): 30}

    def highwater(self, tp) -> int:  # type: ignore[no-untyped-def]
        return {0: 12, 1: 30}[tp.partition]


def test_lag_counts_from_the_committed_offset_of_a_partition_back_from_another_worker():
    from faust.types import TP

    worker = runtime(MemoryRedis(), RecordingProducer())
    worker.progress.consumer = Returned
    worker.progress.positions = {(SETTINGS.events_topic, 0): 10, (SETTINGS.events_topic, 1): 18}   # 18: before it was taken
    assert worker.progress.lag() == 2           # partition 0: 12 - 10; partition 1: nothing past the committed 30
    worker.progress.forget([TP(SETTINGS.events_topic, 1)])
    assert worker.progress.positions == {(SETTINGS.events_topic, 0): 10}
    assert worker.progress.lag() == 2


def test_a_stalled_worker_is_unready_even_while_it_re_scores():
    """Re-scoring after a config change is ready (200, saying so), but not while messages wait
    and none is consumed: the stall wins."""
    from streams.worker.stall import StallWatch

    worker = runtime(MemoryRedis(), RecordingProducer())
    clock = [0.0]
    worker.progress.stall = StallWatch(30.0, clock=lambda: clock[0])

    async def due() -> int:
        return 7

    worker.adoption.remaining = due
    assert asyncio.run(worker.health.ready()) == (True, "re-scoring after a config change: 7 customers to go")
    worker.progress.stall.observe(12)          # messages wait ...
    clock[0] = 31.0                            # ... and none was consumed for 31 s
    ready, detail = asyncio.run(worker.health.ready())
    assert not ready and detail == "12 messages waiting and none consumed for 31 s"


def test_segment_track_messages_are_scored_and_unmapped_names_dead_lettered_and_counted_per_name():
    memory, producer = MemoryRedis(), RecordingProducer()
    worker = runtime(memory, producer)
    at = now_ms() - 60_000
    track = {"type": "track", "messageId": "m1", "userId": "c1", "event": "Post Liked", "timestamp": at,
             "context": {"groupId": "acme"}}
    unmapped = [{**track, "messageId": f"m{i}", "event": name} for i, name in enumerate(["Coupon Applied"] * 2 + ["Nap Taken"], 2)]
    asyncio.run(worker.lifecycle.handle(batch(track, *unmapped, {"type": "page", "messageId": "m9", "userId": "c1"})))
    [card] = producer.on(SETTINGS.scores_topic)
    assert (card["customer_id"], card["account_id"]) == ("c1", "acme")
    dead = producer.on(SETTINGS.dlq_topic)
    assert [(d["reason"], d["field"]) for d in dead] == [("unmapped_event", "event")] * 3 + [("unsupported_message", "type")]
    counted = worker.metrics.unmapped
    assert counted.labels(event="Coupon Applied")._value.get() == 2 and counted.labels(event="Nap Taken")._value.get() == 1


def test_unmapped_event_names_are_labelled_one_by_one_up_to_a_bound_then_as_other():
    from streams.worker.metrics import OTHER_NAME, UNMAPPED_NAMES

    metrics = Metrics(CONFIG.aer.reference_lines)
    for i in range(UNMAPPED_NAMES + 5):
        metrics.count_unmapped(f"Event {i}")
    metrics.count_unmapped("Event 0")            # a name already labelled keeps its label
    metrics.count_unmapped("x" * 300)
    exposition = [s for family in metrics.unmapped.collect() for s in family.samples if s.name.endswith("_total")]
    labels = {s.labels["event"]: s.value for s in exposition}
    assert len(labels) == UNMAPPED_NAMES + 1 and labels[OTHER_NAME] == 6 and labels["Event 0"] == 2


def test_a_backfilled_inactivity_is_recorded_and_counted_not_published():
    memory, producer = MemoryRedis(), RecordingProducer()
    worker = runtime(memory, producer)
    long_ago = now_ms() - 40 * 86_400_000
    asyncio.run(worker.lifecycle.handle(batch(ev("old", "member_joined", long_ago, event_id="e1"))))
    assert producer.on(SETTINGS.alerts_topic) == []
    assert worker.metrics.stale_alerts.labels(rule="inactive")._value.get() == 1
    assert worker.metrics.alerts.labels(rule="inactive")._value.get() == 0
