"""The outbox: outputs committed with the state are published even when their worker dies first.

Store-level tests show the outbox's rules on a real Redis and a real Redis Cluster; the
fault test reproduces the loss it fixes with real worker processes: outputs refused by
Kafka, the worker SIGKILLed while retrying, a new worker publishes every card and alert.
"""

from __future__ import annotations

import asyncio
import json
import signal

import orjson
import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from scoring.alerts import Rule
from scoring.deltas import settle_due
from scoring.engine import Scorer
from scoring.timeutil import DAY
from streams.state.outbox import Kind, Output, alert_output, score_output
from streams.worker.batch import Incoming
from streams.worker.writer import BatchWriter
from streams.state.layout import SHARDS, Keys
from streams.state.store import RedisStore
from tests.streams.support import WorkerProcess, consume_all, now_ms, pipeline_settings
from tests.builders import CONFIG

pytestmark = pytest.mark.services
CUSTOMERS = 20


def joined(unique: str, at_ms: int) -> list[bytes]:
    """CUSTOMERS members who joined 10 days before `at_ms` and did nothing since: each is scored
    (a card) and has missed its 7-day activation (a not_activated alert)."""
    return [orjson.dumps({"event_id": f"{unique}-join-{i}", "customer_id": f"{unique}-c{i}", "type": "member_joined",
                          "ts": at_ms - 10 * DAY}) for i in range(CUSTOMERS)]


@pytest.fixture(params=["single", "cluster"])
def redis_url(request, stack):
    """(url, cluster?) of the session's Redis, or of the session's Redis Cluster."""
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").redis_cluster_url, True
    return stack.redis_url, False


def with_store(url: str, cluster: bool, prefix: str, body):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        store = RedisStore.from_url(url, prefix, cluster=cluster)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(run())


def test_an_output_entry_round_trips_any_key_bytes():
    output = Output("d:x", "x", Kind.DEAD_LETTER, bytes(range(256)), b'{"id":"x","text":"\xc3\xa9"}')
    assert Output.from_entry("d:x", output.entry()) == output
    assert Output.from_entry("d:x", Output("d:x", "x", Kind.DEAD_LETTER, None, b"{}").entry()).key is None


def test_output_ids_are_stable_and_the_webhook_uses_the_alerts_own():
    from streams.sink.webhook import alert_id

    at = now_ms()
    expected = Scorer(CONFIG).process_batch(joined("ids", at), at)
    again = Scorer(CONFIG).process_batch(joined("ids", at), at)
    alerts = [alert_output(a) for a in expected.alerts]
    assert alerts == [alert_output(a) for a in again.alerts]                 # same alert, same id and bytes
    for output, alert in zip(alerts, expected.alerts):
        body = json.loads(output.value)
        assert body["id"] == output.output_id == alert_id(alert.to_dict()) == alert_id(body)
    cards = [score_output(c) for c in expected.cards]
    assert len({c.output_id for c in cards}) == CUSTOMERS
    assert score_output(Scorer(CONFIG).process_batch(joined("ids", at), at + 1).cards[0]).output_id != cards[0].output_id


def test_a_batch_records_exactly_what_it_publishes_and_a_publish_clears_it(redis_url, unique):
    url, cluster = redis_url

    async def body(store: RedisStore) -> None:
        now = now_ms()
        writer = BatchWriter(CONFIG, store, outbox_grace_ms=60_000)
        batch = [Incoming(v, None, "events", 0, i, now) for i, v in enumerate([*joined(unique, now), b"{not json"])]
        processed = await writer.write(batch, now)
        expected = Scorer(CONFIG).process_batch([m.value for m in batch], now, [now] * len(batch))
        kinds = [o.kind for _, o in processed.outputs]
        assert kinds == [Kind.DEAD_LETTER] + [Kind.SCORE] * CUSTOMERS + [Kind.ALERT] * CUSTOMERS
        assert [o for _, o in processed.outputs if o.kind is Kind.SCORE] == [score_output(c) for c in expected.cards]
        assert [o for _, o in processed.outputs if o.kind is Kind.ALERT] == [alert_output(a) for a in expected.alerts]
        assert {a.rule for a in expected.alerts} == {Rule.NOT_ACTIVATED}
        assert all(shard == Keys.shard_of(o.output_id if o.kind is Kind.DEAD_LETTER else o.key.decode())
                   for shard, o in processed.outputs)
        assert await store.outbox_size() == len(processed.outputs)
        # nobody claims them before the grace has passed; after it, one redrive does, for one more grace
        assert [o for s in range(SHARDS) for o in await store.claim_outputs(s, now + 59_000, now + 99_000, 500)] == []
        later = now + 60_000
        claimed = [(s, o) for s in range(SHARDS) for o in await store.claim_outputs(s, later, later + 60_000, 500)]
        assert sorted(o.field for _, o in claimed) == sorted(o.field for _, o in processed.outputs)
        assert sorted(claimed, key=lambda x: x[1].field) == sorted(processed.outputs, key=lambda x: x[1].field)
        assert [o for s in range(SHARDS) for o in await store.claim_outputs(s, later + 1, later + 2, 500)] == []
        assert await store.acknowledge_outputs(processed.outputs) == len(processed.outputs)
        assert await store.outbox_size() == 0

    with_store(url, cluster, unique, body)


def test_a_shard_records_thousands_of_outputs_in_one_write(redis_url, unique):
    """More outputs than a Lua call may unpack as one command's arguments (a batch of batch messages)."""
    url, cluster = redis_url

    async def body(store: RedisStore) -> None:
        outputs = [Output(f"a:{unique}{i}", f"{unique}{i}", Kind.ALERT, b"k", b"{}") for i in range(5000)]
        assert await store.write_shards({}, {}, {3: outputs}, 0) == {3}
        assert await store.outbox_size() == 5000
        claimed = await store.claim_outputs(3, 1, 2, 10_000)
        assert sorted(o.field for o in claimed) == sorted(o.field for o in outputs)
        again = [(3, o) for o in outputs[:7]]      # an output acknowledged twice in one call counts once
        assert await store.acknowledge_outputs([(3, o) for o in outputs] + again) == 5000
        assert await store.outbox_size() == 0 and await store.redis.zcard(store.keys.outbox(3)[1]) == 0

    with_store(url, cluster, unique, body)


def test_a_newer_card_replaces_a_pending_one_and_survives_the_older_ones_publish(redis_url, unique):
    url, cluster = redis_url

    async def body(store: RedisStore) -> None:
        now = now_ms()
        writer = BatchWriter(CONFIG, store, outbox_grace_ms=60_000)
        event = lambda i, t: orjson.dumps({"event_id": f"{unique}-{i}", "customer_id": f"{unique}-c",  # noqa: E731
                                           "type": "like", "ts": t})
        first = await writer.write([Incoming(event(1, now - 1000), None, "events", 0, 1, now)], now)
        second = await writer.write([Incoming(event(2, now - 500), None, "events", 0, 2, now + 1)], now + 1)
        (shard, old), = first.outputs
        (_, new), = second.outputs
        assert old.field == new.field and old.output_id != new.output_id
        assert await store.outbox_size() == 1
        assert await store.acknowledge_outputs(first.outputs) == 0            # the older card's publish: not deleted
        (pending,) = await store.claim_outputs(shard, now + 60_001, now + 120_000, 10)
        assert pending == new                                            # what is left is the newer card
        assert json.loads(pending.value)["ts"] == now + 1
        assert await store.acknowledge_outputs(second.outputs) == 1 and await store.outbox_size() == 0

    with_store(url, cluster, unique, body)


def test_a_write_that_loses_the_race_records_no_outputs(redis_url, unique):
    """The optimistic check fails: neither the state nor the outputs of that shard are written."""
    url, cluster = redis_url

    async def body(store: RedisStore) -> None:
        now = now_ms()
        cid = f"{unique}-c"
        login = orjson.dumps({"event_id": f"{unique}-1", "customer_id": cid, "type": "like", "ts": now})
        processed = await BatchWriter(CONFIG, store).write([Incoming(login, None, "events", 0, 1, now)], now)
        assert await store.acknowledge_outputs(processed.outputs) == 1 and await store.outbox_size() == 0
        loaded = await store.load([cid])
        stale = {cid: "1"}            # another writer got there first (a token this one never had)
        settled = settle_due(loaded.stored, now + 5, CONFIG)
        shard = Keys.shard_of(cid)
        card = score_output(Scorer(CONFIG).process_batch([login], now + 5).cards[0])
        assert await store.write_shards({shard: settled.deltas}, stale, {shard: [card]}, now) == set()
        assert await store.outbox_size() == 0
        assert (await store.load([cid])).read_tokens[cid] == loaded.read_tokens[cid]

    with_store(url, cluster, unique, body)


# --- the fault: outputs refused, the worker killed while retrying, a new worker -------------------------------

def refuse_writes(stack, topics: list[str], refuse: bool) -> None:
    """Make the broker refuse every record of `topics` (max.message.bytes 64), or lift that again."""
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, t, configs={"max.message.bytes": "64"}) for t in topics]
        if refuse:
            admin.alter_configs(resources)
        else:
            admin.reset_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=["max.message.bytes"])
                                 for t in topics])
    finally:
        admin.close()


@pytest.mark.parametrize("redis", ["single", "cluster"])
def test_outputs_committed_before_a_crash_are_published_by_the_next_worker(stack, unique, tmp_path, redis, request):
    settings = pipeline_settings(stack, unique)
    extra = {"ENGAGE_OUTBOX_GRACE_S": "2"}   # the crash is noticed in the default 10 s session timeout
    if redis == "cluster":
        extra |= {"ENGAGE_REDIS_URL": request.getfixturevalue("redis_cluster").redis_cluster_url,
                  "ENGAGE_REDIS_CLUSTER": "true"}
    refuse_writes(stack, [settings.scores_topic, settings.alerts_topic], True)
    first = WorkerProcess(stack, unique, tmp_path, "w1", extra_env=extra)
    second = None
    try:
        first.wait_until(lambda: first.metrics().get("engagement_assigned_partitions") == 4, "partitions")
        at = now_ms()
        values = joined(unique, at)
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        producer.send(settings.events_topic, value=b"[" + b",".join(values) + b"]")   # one batch message: one batch
        producer.flush()
        producer.close()

        # applied in Redis, outputs recorded, publishing refused and retried: the loss window of old
        first.wait_until(lambda: (m := first.metrics())["engagement_outbox_outputs"] == 2 * CUSTOMERS
                         and m["engagement_batch_retries_total"] > 0,
                         "the batch applied, its outputs recorded and their publishing failing")
        assert first.get("/readyz")[0] == 503
        assert consume_all(stack, settings.scores_topic) == [] and consume_all(stack, settings.alerts_topic) == []
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        refuse_writes(stack, [settings.scores_topic, settings.alerts_topic], False)

        second = WorkerProcess(stack, unique, tmp_path, "w2", extra_env=extra)
        reference = Scorer(CONFIG)
        expected = reference.process_batch(values, at)
        want_alerts = {(a.customer_id, a.rule.value) for a in expected.alerts}
        assert len(want_alerts) == CUSTOMERS

        def delivered() -> bool:
            cards = {k.decode() for k, _ in consume_all(stack, settings.scores_topic)}
            alerts = {(a["customer_id"], a["rule"]) for _, v in consume_all(stack, settings.alerts_topic)
                      if (a := json.loads(v))}
            return cards == {c.customer_id for c in expected.cards} and alerts == want_alerts

        second.wait_until(delivered, "every card and alert of the killed worker's batch to arrive", timeout=120)
        second.wait_until(lambda: second.metrics()["engagement_outbox_outputs"] == 0, "the outbox to drain")
        assert second.metrics()["engagement_outbox_redriven_total"] >= 2 * CUSTOMERS
        assert second.metrics()["engagement_events_processed_total"] == 0      # the redelivered batch: duplicates
        # at-least-once: a repeat carries the same id, so a consumer can drop it
        alerts = [json.loads(v) for _, v in consume_all(stack, settings.alerts_topic)]
        by_id = {}
        for alert in alerts:
            assert by_id.setdefault(alert["id"], alert) == alert
        assert len(by_id) == CUSTOMERS
        for _, value in consume_all(stack, settings.scores_topic):
            card = json.loads(value)
            assert reference.customer(card["customer_id"], card["ts"]).es == card["es"]
    finally:
        refuse_writes(stack, [settings.scores_topic, settings.alerts_topic], False)
        for worker in (first, second):
            if worker is not None:
                worker.stop()
