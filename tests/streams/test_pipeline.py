"""End to end on real services: Kafka -> worker process(es) -> Redis, API, /metrics, DLQ, scores.

Everything the pipeline shows must equal the pure core's computation over the same
messages, exactly.
"""

from __future__ import annotations

import csv
import io

import json
import urllib.parse
import urllib.request
from collections import Counter

import orjson
import pytest
from kafka import KafkaProducer

from scoring.engine import Outcome, Result, Scorer
from scoring.explain import explain
from scoring.history import account_history, customer_history
from scoring.messages import unpack
from scoring.messages import pack
from devstack.traffic import Kind, TrafficGenerator, TrafficSettings, batched
from scoring.timeutil import DAY, HOUR
from devstack import stack as local
from streams.codec import original_bytes
from streams.serve import openapi
from streams.worker.metrics import KPI_FAMILIES, KPI_GAUGES
from devstack.producer import partition_of
from tests.streams.support import ApiProcess, WorkerProcess, consume_all, now_ms, pipeline_settings, redis_records, without_ids
from tests.openapi_check import schema_errors
from tests.builders import CONFIG
from scoring.business import business_kpis
from scoring import formulas
from scoring.config import Config, load_config
from scoring.segment_kpis import kpi_segments, segment_states

pytestmark = pytest.mark.services
MESSAGES = 2500


def produce_stream(stack: local.Stack, unique: str) -> list[bytes]:
    """A seeded stream with duplicates, out-of-order, late and malformed messages; returns the values sent."""
    settings = pipeline_settings(stack, unique)
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=99, prefix=unique,
                                               malformed_share=0.01, late_share=0.01, duplicate_share=0.02))
    start = now_ms() - 5 * DAY
    messages = list(traffic.messages(MESSAGES, start, 5 * DAY - HOUR))
    kinds = Counter(m.kind for m in messages)
    assert all(kinds[k] > 0 for k in Kind)  # every kind of trouble is really in the stream
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for message in messages:
        producer.send(settings.events_topic, key=message.key or None, value=message.value)
    producer.flush()
    producer.close()
    return [m.value for m in messages]


def reference_for(values: list[bytes], at_ms: int, config: Config = CONFIG
                  ) -> tuple[Scorer, list[tuple[bytes, int | None, Result]]]:
    """The pure core over the same messages in the same per-partition (per-customer) order.

    One (the bytes the DLQ must carry, index inside a batch message, result) per event.
    """
    scorer = Scorer(config)
    results = []
    for value in values:
        for item, result in zip(unpack(value, config), scorer.process_message(value, at_ms), strict=True):
            results.append((item.original(value), item.index, result))
    return scorer, results


def check_everything(stack: local.Stack, unique: str, values: list[bytes], workers: list[WorkerProcess],
                     cluster_url: str | None = None, readers: tuple[ApiProcess, ...] = (),
                     config: Config = CONFIG) -> Scorer:
    """Everything a worker shows equals the core's over the same stream; `config` is the workers' own."""
    events = sum(len(unpack(value, config)) for value in values)
    total = lambda: sum(w.metrics()["engagement_events_consumed_total"] for w in workers)  # noqa: E731
    workers[0].wait_until(lambda: total() == events, f"all {events} events consumed")
    done_at = now_ms()
    reference, framed = reference_for(values, done_at, config)
    results = [r for _, _, r in framed]

    # Redis state equals the core's, customer by customer
    states = redis_records(stack, unique, cluster_url)
    assert sorted(states) == sorted(reference.customers)
    for cid, state in states.items():
        assert state == without_ids(reference.customers[cid]), cid

    # counters: consumed, processed, deduplicated, rejected by reason (summed over workers)
    outcomes = Counter(r.outcome for r in results)
    reasons = Counter(r.reason.value for r in results if r.reason)
    summed: Counter[str] = Counter()
    for worker in workers:
        for name, value in worker.metrics().items():
            summed[name] += value
    assert summed["engagement_messages_consumed_total"] == len(values)
    assert summed["engagement_events_processed_total"] == outcomes[Outcome.ACCEPTED]
    assert summed["engagement_events_deduplicated_total"] == outcomes[Outcome.DUPLICATE]
    for reason, count in reasons.items():
        assert summed[f'engagement_events_rejected_total{{reason="{reason}"}}'] == count, reason

    # every API response equals the core's, at a fixed as_of, from every worker and `engage api`,
    # and matches its schema in GET /openapi.json
    as_of = done_at
    for worker in (*workers, *readers):
        assert worker.get("/openapi.json") == (200, json.loads(orjson.dumps(openapi.document())))
        alerts_active = {}
        for cid in reference.customers:
            status, body = worker.get(f"/customers/{urllib.parse.quote(cid)}?as_of={as_of}")
            assert status == 200 and schema_errors("GET", "/customers/{customer_id}", 200, body) == []
            alerts_active[cid] = body.pop("alerts_active")
            why = body.pop("why")
            assert body == json.loads(orjson.dumps(reference.customer(cid, as_of).to_dict())), cid
            assert why == json.loads(orjson.dumps(explain(reference.customers[cid], as_of, config).to_dict())), cid
        accounts = sorted({s.account_id for s in reference.customers.values() if s.account_id})
        for aid in accounts:
            status, body = worker.get(f"/accounts/{aid}?as_of={as_of}")
            assert status == 200 and schema_errors("GET", "/accounts/{account_id}", 200, body) == []
            assert body == json.loads(orjson.dumps(reference.account(aid, as_of).to_dict())), aid
        for cid in sorted(reference.customers)[:20]:
            status, body = worker.get(f"/customers/{urllib.parse.quote(cid)}/history?as_of={as_of}")
            assert status == 200 and schema_errors("GET", "/customers/{customer_id}/history", 200, body) == []
            expected = customer_history(reference.customers[cid], as_of, config).to_dict()
            assert body == json.loads(orjson.dumps({"customer_id": cid, **expected})), cid
        for aid in accounts:
            status, body = worker.get(f"/accounts/{aid}/history?as_of={as_of}")
            assert status == 200 and schema_errors("GET", "/accounts/{account_id}/history", 200, body) == []
            users = [s for s in reference.customers.values() if s.account_id == aid]
            expected = account_history(users, as_of, config).to_dict()
            assert body == json.loads(orjson.dumps({"account_id": aid, "users": len(users), **expected})), aid
        for order in ("top", "bottom"):
            status, body = worker.get(f"/leaderboard?order={order}&limit=15&as_of={as_of}")
            expected = reference.leaderboard(as_of, limit=15, bottom=order == "bottom")
            assert status == 200 and [c["customer_id"] for c in body["customers"]] == [c.customer_id for c in expected]
            assert schema_errors("GET", "/leaderboard", 200, body) == []
        status, body = worker.get(f"/kpis?as_of={as_of}")
        assert status == 200 and body == json.loads(orjson.dumps(reference.kpis(as_of).to_dict()))
        assert schema_errors("GET", "/kpis", 200, body) == []
        for segment in kpi_segments(config):       # KPIs per segment: the core's over the segment's customers now
            status, body = worker.get(f"/kpis?segment={segment}&as_of={as_of}")
            expected = segment_kpis(reference, segment, as_of, config)
            assert status == 200 and body == {"segment": segment, **expected}, segment
            assert expected["members"] + expected["scored_customers"] > 0, segment     # the traffic fills each
            assert schema_errors("GET", "/kpis", 200, body) == []
        status, body = worker.get(f"/kpis?segment={unique}-not-kept-apart")
        assert status == 400 and "kpis.segments" in body["error"]
        for path in ("/at-risk", "/alerts/recent"):
            status, body = worker.get(path)
            assert status == 200 and schema_errors("GET", path, 200, body) == [], path
        status, body = worker.get("/customers/nobody-at-all")
        assert status == 404 and schema_errors("GET", "/customers/{customer_id}", 404, body) == []
        assert worker.get("/leaderboard?order=sideways")[0] == 400

        # batch lookups: every customer and account at once, and ids nobody has, listed apart
        ids = sorted(reference.customers)
        status, body = worker.post("/customers:batch", {"ids": [f"{unique}-nobody", *ids]})
        assert status == 200 and schema_errors("POST", "/customers:batch", 200, body) == []
        assert body["unknown"] == [f"{unique}-nobody"] and [r["customer_id"] for r in body["customers"]] == ids
        for row in body["customers"]:
            card = reference.customer(row["customer_id"], body["as_of"])
            assert row == {"customer_id": card.customer_id, "account_id": card.account_id, "es": round(card.es, 6),
                           "tier": card.tier.value, "cer": card.cer, "active": card.active,
                           "alerts": alerts_active[card.customer_id], "traits": card.traits}
        # the CSV export: every customer once, in the bottom order, each row the batch read's standing
        batch_rows = {row["customer_id"]: row for row in body["customers"]}
        with urllib.request.urlopen(worker.url + "/customers.csv", timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/csv")
            exported = list(csv.DictReader(io.StringIO(response.read().decode())))
        bottom = reference.leaderboard(body["as_of"], limit=len(ids), bottom=True)
        assert [r["customer_id"] for r in exported] == [c.customer_id for c in bottom] and len(exported) == len(ids)
        for r in exported:
            row = batch_rows[r["customer_id"]]
            assert (float(r["es"]), float(r["cer"]), r["tier"], r["active"] == "true", r["account_id"] or None,
                    r["alerts"].split(";") if r["alerts"] else []) == \
                (row["es"], row["cer"], row["tier"], row["active"], row["account_id"], row["alerts"])
            assert {k[7:]: v for k, v in r.items() if k.startswith("traits.") and v} == \
                {k: str(v) for k, v in row["traits"].items()}
        status, body = worker.post("/accounts:batch", {"ids": [*accounts, f"{unique}-no-account"]})
        assert status == 200 and schema_errors("POST", "/accounts:batch", 200, body) == []
        assert body["unknown"] == [f"{unique}-no-account"] and [a["account_id"] for a in body["accounts"]] == accounts
        for summary in body["accounts"]:
            full = json.loads(orjson.dumps(reference.account(summary["account_id"], body["as_of"]).to_dict()))
            full.pop("breakdown")
            full.pop("measures")
            full.pop("traits")
            assert summary == full
        status, body = worker.post("/customers:batch", {"ids": []})
        assert status == 400 and schema_errors("POST", "/customers:batch", 400, body) == []

    # /metrics KPI gauges equal the core's KPIs at the snapshot's instant, identical on every worker
    def fresh(worker):
        values = worker.metrics()
        stamp = values.get("engagement_kpi_as_of_timestamp_seconds")
        return values if stamp is not None and stamp * 1000 > done_at else None

    for worker in workers:
        metrics = worker.wait_until(lambda: fresh(worker), "KPI gauges computed after the stream was processed")
        expected_kpis = reference.kpis(round(metrics["engagement_kpi_as_of_timestamp_seconds"] * 1000)).to_dict()
        for gauge in KPI_GAUGES:
            labels = ",".join(f'{k}="{v}"' for k, v in (gauge.labels or {}).items())
            name = f"engagement_{gauge.name}" + (f"{{{labels}}}" if labels else "")
            assert metrics[name] == pytest.approx(expected_kpis[gauge.field], rel=1e-12, abs=1e-12), name
        for family in KPI_FAMILIES:
            assert expected_kpis[family.field], family.field      # the traffic fills every family
            for key, value in expected_kpis[family.field].items():
                name = f'engagement_{family.name}{{{family.label}="{key}"}}'
                assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
        assert metrics[f'engagement_aer_band{{band="{expected_kpis["aer_band"]}"}}'] == 1.0
        at = round(metrics["engagement_kpi_as_of_timestamp_seconds"] * 1000)
        for segment in kpi_segments(config):
            expected = segment_kpis(reference, segment, at, config)
            for gauge in KPI_GAUGES:
                labels = ",".join(f'{k}="{v}"' for k, v in {"segment": segment, **(gauge.labels or {})}.items())
                name = f"engagement_segment_{gauge.name}{{{labels}}}"
                assert metrics[name] == pytest.approx(expected[gauge.field], rel=1e-12, abs=1e-12), name

    # no customer or account id anywhere in the exposition (every id of this run carries `unique`)
    ids = set(reference.customers) | {s.account_id for s in reference.customers.values() if s.account_id}
    assert len(ids) > 100
    for worker in workers:
        with urllib.request.urlopen(worker.url + "/metrics", timeout=30) as response:
            exposition = response.read().decode()
        assert unique not in exposition and [i for i in ids if i in exposition] == []

    # the alerts topic: one message per alert counted, each with rule, before/after and breakdown
    alerts = [json.loads(v) for _, v in consume_all(stack, f"{unique}.engagement.alerts")]
    assert len(alerts) == sum(v for k, v in summed.items() if k.startswith("engagement_alerts_total"))
    for alert in alerts:
        assert alert["rule"] in {"tier_downgrade", "score_drop", "inactive", "not_activated"}
        assert alert["customer_id"] in reference.customers and alert["breakdown"]
        assert set(alert) >= {"before", "after", "as_of", "account_id", "why"}
        assert {"tier", "es"} <= set(alert["before"]) and {"tier", "es"} <= set(alert["after"])
        silence = alert["rule"] in {"inactive", "not_activated"}          # the explanation speaks to its rule
        assert alert["why"]["sentence"].startswith(("No activity for ", "Never active since joining ") if silence
                                                   else "ES ") and schema_errors(
            "GET", "/alerts/recent", 200, {"alerts": [alert]}) == []

    # the DLQ holds exactly the rejected messages, each with its reason and original bytes
    dlq = consume_all(stack, f"{unique}.engagement.events.dlq")
    envelopes = [json.loads(v) for _, v in dlq]
    got = Counter((e["reason"], e["field"], original_bytes(e), e["source"]["index"]) for e in envelopes)
    want = Counter((r.reason.value, r.field, original, index) for original, index, r in framed
                   if r.outcome is Outcome.REJECTED)
    assert got == want
    assert any(field for _, field, _, _ in got)  # the field to blame travels with the event

    # the compacted scores topic: each customer's last snapshot matches the core at its instant
    last: dict[str, dict] = {}
    for key, value in consume_all(stack, f"{unique}.engagement.scores"):
        last[key.decode()] = json.loads(value)
    assert sorted(last) == sorted(reference.customers)
    for cid, snap in last.items():
        card = reference.customer(cid, snap["ts"])
        assert (snap["es"], snap["cer"], snap["tier"]) == (card.es, card.cer, card.tier.value), cid
    return reference


def segment_kpis(reference: Scorer, segment: str, as_of: int, config: Config) -> dict:
    """The core's KPIs of one segment: the business KPIs over the customers in it now, as JSON has them."""
    states = segment_states(reference.customers.values(), segment, config)
    return json.loads(orjson.dumps(business_kpis(states, as_of, config).to_dict()))


# two of the generator's three segments with KPIs of their own; its mid_market customers are in neither
SEGMENTED = {"kpis": {"segments": ["smb", "enterprise"]}}


@pytest.mark.parametrize("redis", ["single", "cluster"])
def test_one_worker_end_to_end_equals_the_core(stack, unique, tmp_path, redis, request):
    """On a single Redis and on the local three-master Redis Cluster (ENGAGE_REDIS_CLUSTER); with KPIs
    per segment and ARR-weighted accounts (the worker and `engage api` on the same config file)."""
    cluster_url = request.getfixturevalue("redis_cluster").redis_cluster_url if redis == "cluster" else None
    config_file = tmp_path / "engage.toml"
    config_file.write_text('[kpis]\nsegments = ["smb", "enterprise"]\n[accounts]\nweight = "arr"\n')
    config = load_config(overrides={**SEGMENTED, "accounts": {"weight": "arr"}})
    values = produce_stream(stack, unique)
    extra = {"ENGAGE_REDIS_URL": cluster_url, "ENGAGE_REDIS_CLUSTER": "true"} if cluster_url else None
    worker = WorkerProcess(stack, unique, tmp_path, "w1", config=config_file, extra_env=extra)
    reader = ApiProcess(stack, unique, tmp_path, extra_env=extra, config=config_file)   # the read API on its own
    try:
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness")
        reader.wait_until(lambda: reader.get("/readyz")[0] == 200, "the API's readiness")
        reference = check_everything(stack, unique, values, [worker], cluster_url, (reader,), config)
    finally:
        reader.stop()
        worker.stop()
    # the accounts compared were weighed: in some, the ARR-weighted ES is not the users' plain mean
    at = now_ms()
    weighed = [aid for aid in {s.account_id for s in reference.customers.values() if s.account_id}
               if reference.account(aid, at).es != formulas.mean(reference.customer(c, at).es for c, s in
                                                               reference.customers.items() if s.account_id == aid)]
    assert weighed


def produce_batched_stream(stack: local.Stack, unique: str) -> list[bytes]:
    """The same kind of stream, sent as batch messages: JSON arrays and NDJSON alternating, grouped
    per partition like `engage generate --batch` does; a few malformed texts go alone."""
    settings = pipeline_settings(stack, unique)
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=77, prefix=unique,
                                               malformed_share=0.02, late_share=0.01, duplicate_share=0.02))
    messages = list(traffic.messages(MESSAGES, now_ms() - 5 * DAY, 5 * DAY - HOUR))
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    values = []
    for i, (message, members) in enumerate(batched(messages, 40, "array", partition_of(producer, settings.events_topic))):
        value = pack([m.value for m in members], "ndjson") if i % 2 and len(members) > 1 else message.value
        producer.send(settings.events_topic, key=message.key or None, value=value)
        values.append(value)
    producer.flush()
    producer.close()
    assert sum(v.startswith(b"[") for v in values) > 10 and sum(v.count(b"\n") > 1 for v in values) > 10
    return values


@pytest.mark.parametrize("consumption", ["chunked", "stock"])
def test_batch_messages_end_to_end_equal_the_core_with_per_event_dead_letters(stack, unique, tmp_path, consumption):
    """On both consumption paths (ENGAGE_CONSUMPTION); every other service test runs the default, chunked."""
    values = produce_batched_stream(stack, unique)
    worker = WorkerProcess(stack, unique, tmp_path, "w1", extra_env={"ENGAGE_CONSUMPTION": consumption})
    try:
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness")
        check_everything(stack, unique, values, [worker])
        envelopes = [json.loads(v) for _, v in consume_all(stack, f"{unique}.engagement.events.dlq")]
        assert any(e["source"]["index"] is not None for e in envelopes)   # rejected from inside a batch
    finally:
        worker.stop()


def docs_producer_values(bootstrap: str, topic: str, day: str) -> list[bytes]:
    """Run the producer example of docs/bring-your-own-events.md against this test's topic (its
    events dated `day`); returns the values it sent, as serialised."""
    import pathlib
    import re

    page = (pathlib.Path(__file__).parents[2] / "docs" / "bring-your-own-events.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    code = code.replace('"localhost:9092"', repr(bootstrap)).replace('"engagement.events"', repr(topic))
    code = code.replace("2026-11-20", day)
    sent: list[bytes] = []

    class Recording(KafkaProducer):
        def __init__(self, **configs):  # type: ignore[no-untyped-def]
            self.serialize_value = configs.get("value_serializer") or (lambda v: v)
            super().__init__(**configs)

        def send(self, topic, value=None, key=None, **kwargs):  # type: ignore[no-untyped-def]
            sent.append(self.serialize_value(value))
            return super().send(topic, value=value, key=key, **kwargs)

    import kafka

    kafka.KafkaProducer = Recording          # what the example's `from kafka import KafkaProducer` finds
    try:
        exec(compile(code, "bring-your-own-events.md", "exec"), {"__name__": "docs_example"})
    finally:
        kafka.KafkaProducer = KafkaProducer
    return sent


def test_segment_spec_messages_end_to_end_equal_the_core_and_the_same_stream_in_the_own_format(stack, unique,
                                                                                                 tmp_path):
    """The stream of test_one_worker_end_to_end_equals_the_core sent as Segment-spec track messages,
    with track events no mapping names, an identify, and the docs' producer example: the worker
    equals the core over what was sent (DLQ, counters, API, gauges, scores), the core scores the
    Segment stream exactly as the same stream in the product's format, and the unmapped names are
    counted per name."""
    from datetime import datetime, timedelta, timezone

    from devstack.traffic import as_segment

    settings = pipeline_settings(stack, unique)
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=99, prefix=unique,
                                               malformed_share=0.01, late_share=0.01, duplicate_share=0.02))
    messages = list(traffic.messages(MESSAGES, now_ms() - 5 * DAY, 5 * DAY - HOUR))
    segment = [as_segment(m, CONFIG.mapping) for m in messages]
    at = now_ms() - HOUR
    odd = [orjson.dumps({"type": "track", "messageId": f"{unique}-odd-{i}", "userId": f"{unique}-c-odd", "event": name,
                         "timestamp": at}) for i, name in enumerate(["Coupon Applied", "Coupon Applied", "Nap Taken"])]
    odd.append(orjson.dumps({"type": "identify", "messageId": f"{unique}-id-1", "userId": f"{unique}-c-odd",
                             "timestamp": at, "traits": {"plan": "pro", "email": "odd@example.com"}}))
    odd.append(orjson.dumps({"type": "page", "messageId": f"{unique}-page-1", "userId": f"{unique}-c-odd",
                             "timestamp": at, "name": "Pricing"}))
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for message in segment:
        producer.send(settings.events_topic, key=message.key or None, value=message.value)
    for value in odd:
        producer.send(settings.events_topic, key=f"{unique}-c-odd".encode(), value=value)
    producer.flush()
    producer.close()
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    example = docs_producer_values(stack.kafka_bootstrap, settings.events_topic, yesterday)
    values = [m.value for m in segment] + odd + example
    assert len(example) == 2 and sum(v.startswith(b'{"type":"track"') for v in values) > 0.95 * len(values)
    assert sum(v.startswith(b'{"type":"group"') for v in values) > 5          # the accounts' traits

    # the core scores the Segment stream as the same stream in the product's format
    own, own_results = reference_for([m.value for m in messages], now_ms())
    theirs, their_results = reference_for([m.value for m in segment], now_ms())
    assert theirs.customers == own.customers
    assert [(r.outcome, r.reason) for _, _, r in their_results] == [(r.outcome, r.reason) for _, _, r in own_results]

    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness")
        reference = check_everything(stack, unique, values, [worker])
        assert reference.customers["u-1042"].account_id == "acme"          # the docs' two events, both accepted
        metrics = worker.metrics()
        assert metrics['engagement_unmapped_events_total{event="Coupon Applied"}'] == 2
        assert metrics['engagement_unmapped_events_total{event="Nap Taken"}'] == 1
        assert metrics['engagement_events_rejected_total{reason="unsupported_message"}'] == 1
        # traits: the identify's (its allowed ones) and the group calls' kept as the core keeps them
        status, body = worker.get(f"/customers/{unique}-c-odd")
        assert status == 200 and body["traits"] == {"plan": "pro"}
        grouped = [cid for cid, state in reference.customers.items() if state.traits][:5]
        assert grouped
        for cid in grouped:
            status, body = worker.get(f"/customers/{urllib.parse.quote(cid)}")
            assert status == 200 and body["traits"] == reference.customer(cid, body["as_of"]).to_dict()["traits"]
            assert set(body["traits"]) == {"plan", "owner", "arr", "seats_bought", "seats_used", "renewal_date"}
    finally:
        worker.stop()


def test_two_workers_sharing_the_partitions_equal_the_core(stack, unique, tmp_path):
    workers = [WorkerProcess(stack, unique, tmp_path, f"w{i}") for i in (1, 2)]
    try:
        def split() -> bool:  # both own partitions before any message is sent
            owned = [w.metrics().get("engagement_assigned_partitions", 0) for w in workers]
            return sum(owned) == 4 and all(owned)

        workers[0].wait_until(split, "the two workers to share the 4 partitions")
        values = produce_stream(stack, unique)
        check_everything(stack, unique, values, workers)
        consumed = [w.metrics()["engagement_events_consumed_total"] for w in workers]
        assert all(c > 0 for c in consumed), consumed  # both really took part
    finally:
        for worker in workers:
            worker.stop()


def test_a_real_prometheus_scrapes_the_worker(prometheus_stack, unique, tmp_path):
    values = produce_stream(prometheus_stack, unique)
    worker = WorkerProcess(prometheus_stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: worker.metrics()["engagement_events_consumed_total"] == len(values), "consumption")
        worker.wait_until(lambda: "engagement_members" in worker.metrics(), "a KPI snapshot")
        local.set_scrape_targets(prometheus_stack, [f"127.0.0.1:{worker.port}"])

        def query(expr: str) -> float | None:
            url = f"{prometheus_stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(url, timeout=10) as response:
                result = json.load(response)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        scraped = worker.wait_until(lambda: query("engagement_events_consumed_total"), "Prometheus to scrape")
        assert scraped == len(values)
        members = worker.metrics()["engagement_members"]
        assert worker.wait_until(lambda: query("engagement_members") == members, "the members gauge")
        assert query('sum(engagement_events_rejected_total)') > 0
        assert query('count(engagement_customers_by_tier)') == 3
    finally:
        local.set_scrape_targets(prometheus_stack, [])
        worker.stop()


def consumed_by_a_worker(stack: local.Stack, unique: str, tmp_path) -> list[bytes]:  # type: ignore[no-untyped-def]
    """A produced stream, consumed whole by a worker that is then stopped; returns the values sent."""
    values = produce_stream(stack, unique)
    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    try:
        worker.wait_until(lambda: worker.metrics()["engagement_events_consumed_total"] == len(values), "consumption")
    finally:
        worker.stop()
    return values


def test_replay_rebuilds_exactly_the_live_state(stack, unique, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from streams.cli import main

    values = consumed_by_a_worker(stack, unique, tmp_path)
    monkeypatch.setenv("ENGAGE_KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
    monkeypatch.setenv("ENGAGE_REDIS_URL", stack.redis_url)
    rebuilt = f"{unique}r"
    result = CliRunner().invoke(main, ["replay", "--topic-prefix", f"{unique}.", "--key-prefix", rebuilt])
    assert result.exit_code == 0, result.output
    assert f"replayed {len(values):,} messages" in result.output

    live, replayed = redis_records(stack, unique), redis_records(stack, rebuilt)
    assert len(live) > 50 and replayed == live

    some = sorted(live)[0]
    shown = CliRunner().invoke(main, ["score", some, "--key-prefix", rebuilt])
    assert shown.exit_code == 0 and json.loads(shown.output)["customer_id"] == some
    missing = CliRunner().invoke(main, ["score", "nobody", "--key-prefix", rebuilt])
    assert missing.exit_code == 1 and "unknown customer" in missing.output


def test_time_driven_alerts_fire_once_and_hysteresis_survives_a_restart(stack, unique, tmp_path):
    config = tmp_path / "alerts.toml"
    config.write_text('[alerts]\ninactivity = "2s"\nactivation = "off"\n')
    settings = pipeline_settings(stack, unique)
    member = f"{unique}m"
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for i, type_ in enumerate(("member_joined", "like")):
        event = {"event_id": f"{unique}e{i}", "customer_id": member, "type": type_, "ts": now_ms()}
        producer.send(settings.events_topic, key=member.encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()

    def inactive_alerts() -> list[dict]:
        return [json.loads(v) for _, v in consume_all(stack, settings.alerts_topic)
                if json.loads(v)["rule"] == "inactive"]

    worker = WorkerProcess(stack, unique, tmp_path, "w1", config=config, sweep_s="1")
    try:
        fired = worker.wait_until(inactive_alerts, "the sweep to find the member inactive")
        assert [a["customer_id"] for a in fired] == [member]
        worker.wait_for_sweeps(3)                      # several more sweeps: the condition holds, no re-fire
        assert len(inactive_alerts()) == 1
    finally:
        worker.stop()
    restarted = WorkerProcess(stack, unique, tmp_path, "w2", config=config, sweep_s="1")
    try:
        restarted.wait_until(lambda: restarted.get("/readyz")[0] == 200, "readiness")
        restarted.wait_for_sweeps(3)
        assert len(inactive_alerts()) == 1             # the rule state was persisted in Redis
        status, body = restarted.get("/at-risk")
        assert status == 200 and member in [c["customer_id"] for c in body["customers"]]
    finally:
        restarted.stop()


def test_a_changed_scoring_config_rescores_the_stored_standings_without_a_replay(stack, unique, tmp_path):
    """Leaderboards and KPI sums are stored; a worker started with other weights re-scores them
    in the background (shown by engagement_due_customers), then they equal the core's under the new config."""
    values = consumed_by_a_worker(stack, unique, tmp_path)
    changed = tmp_path / "weights.toml"
    changed.write_text("[weights]\nlike = 10\nfollow = 1\n[tiers]\nexcellent = 50\nmoderate = 20\n"
                       # segment scorecards: enterprise customers scored on product use
                       "[scorecards.enterprise]\nweights = { feature_used = 10, like = 0, purchase = 8 }\n"
                       "targets = { feature_used = 3 }\ntiers = { excellent = 70, moderate = 40 }\n"
                       "[scorecards.smb.weights]\nemail_open = 6\n"
                       # measures: tickets a penalty, NPS answers by their mean; enterprise drops NPS
                       "[measures.tickets]\nkind = \"penalty\"\ntype = \"ticket_opened\"\nweight = 3\ntarget = 2\n"
                       "[measures.nps]\nkind = \"average\"\ntype = \"nps_response\"\nweight = 4\n"
                       "ranges = [[0, 0], [7, 50], [9, 100]]\n"
                       "[scorecards.enterprise.measures.nps]\nkind = \"average\"\ntype = \"nps_response\"\n"
                       "weight = 0\nlinear = [0, 10]\n")
    config = load_config(changed)
    second = WorkerProcess(stack, unique, tmp_path, "w2", config=changed, sweep_s="1")
    try:
        second.wait_until(lambda: "config changed" in second.log.read_text(), "the config change to be noticed")
        second.wait_until(lambda: second.metrics().get("engagement_due_customers") == 0, "the background re-score")
        as_of = now_ms()
        reference = Scorer(config)
        for value in values:
            reference.process_message(value, as_of)
        for order in ("top", "bottom"):
            status, body = second.get(f"/leaderboard?order={order}&limit=15")
            expected = reference.leaderboard(as_of, limit=15, bottom=order == "bottom")
            assert status == 200 and [c["customer_id"] for c in body["customers"]] == [
                c.customer_id for c in expected]
            assert [c["es"] for c in body["customers"]] == [round(c.es, 6) for c in expected]
        status, body = second.get(f"/kpis?as_of={as_of}")
        assert status == 200 and body == json.loads(orjson.dumps(reference.kpis(as_of).to_dict()))
        # each segment with a scorecard has its leaderboard; its customers are scored by it
        for segment in ("enterprise", "smb"):
            for order in ("top", "bottom"):
                status, body = second.get(f"/leaderboard?order={order}&limit=10&segment={segment}")
                expected = reference.leaderboard(as_of, limit=10, bottom=order == "bottom", segment=segment)
                assert status == 200 and body["segment"] == segment and len(expected) == 10
                assert [(c["customer_id"], c["es"], c["tier"]) for c in body["customers"]] == [
                    (c.customer_id, round(c.es, 6), c.tier.value) for c in expected]
            for card in expected[:3]:
                status, body = second.get(f"/customers/{urllib.parse.quote(card.customer_id)}?as_of={as_of}")
                full = json.loads(orjson.dumps(reference.customer(card.customer_id, as_of).to_dict()))
                assert body["segment"] == segment and body["breakdown"] == full["breakdown"]
                assert body["measures"] == full["measures"] and body["es"] == full["es"]
        # the default scorecard's measures, read back as the core computes them: some customers answered
        answered = 0
        for card in [*reference.leaderboard(as_of, limit=30), *reference.leaderboard(as_of, limit=10, bottom=True)]:
            status, body = second.get(f"/customers/{urllib.parse.quote(card.customer_id)}?as_of={as_of}")
            full = json.loads(orjson.dumps(reference.customer(card.customer_id, as_of).to_dict()))
            assert schema_errors("GET", "/customers/{customer_id}", 200, body) == []
            assert status == 200 and body["measures"] == full["measures"] and body["why"]["drivers"] == \
                json.loads(orjson.dumps(explain(reference.customers[card.customer_id], as_of, config).to_dict()))["drivers"]
            answered += any(m["reading"] is not None for m in body["measures"] if m["kind"] == "average")
        assert answered > 0
        assert second.get("/leaderboard?segment=mid_market")[0] == 400       # no scorecard, not listed
    finally:
        second.stop()


def test_an_accounts_fall_is_one_account_alert_per_rule_naming_the_users_that_drove_it(stack, unique, tmp_path):
    """Account-level alerts: two of an account's three users move to a segment
    whose scorecard is harsh; the next sweep rolls the account up (ARR-weighted) against its snapshot
    and fires one tier downgrade and one score drop, equal to the core's evaluation, naming those two users."""
    from scoring.account_alerts import evaluate_account
    from scoring.config import default_mapping
    from streams.sink.alert_sink import parse_alert
    from streams.sink.webhook import slack_payload

    zeros = "\n".join(f"{name} = 0" for name in default_mapping()["weights"] if name != "like")
    path = tmp_path / "accounts.toml"
    path.write_text(f"[weights]\nlike = 1\n{zeros}\n[targets]\nlike = 10\n"
                    "[scorecards.harsh.targets]\nlike = 1000\n[alerts]\nactivation = \"off\"\n"
                    "[accounts]\nweight = \"arr\"\n")
    config = load_config(path)
    settings = pipeline_settings(stack, unique)
    account, users = f"{unique}-acme", [f"{unique}-u{i}" for i in range(3)]
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    serial = iter(range(100))

    def send(cid: str, **fields) -> bytes:
        value = orjson.dumps({"event_id": f"{unique}e{next(serial)}", "customer_id": cid, "type": "like",
                              "ts": now_ms() - 60_000, "account_id": account, **fields})
        producer.send(settings.events_topic, key=cid.encode(), value=value)
        return value

    def account_alerts() -> list[dict]:
        return [json.loads(v) for _, v in consume_all(stack, settings.alerts_topic)
                if json.loads(v)["rule"].startswith("account_")]

    arr = dict(zip(users, (50_000, 30_000, 20_000)))
    first = [send(cid, count=10, traits={"arr": arr[cid]}) for cid in users]    # ES 100 each: excellent
    producer.flush()
    worker = WorkerProcess(stack, unique, tmp_path, "w1", config=path, sweep_s="1")
    try:
        worker.wait_until(lambda: worker.metrics().get("engagement_events_consumed_total") == 3, "the first likes")
        worker.wait_for_sweeps(2)                                 # the account's first evaluation: a snapshot
        assert account_alerts() == []
        second = [send(cid, segment="harsh") for cid in users[:2]]   # 11 likes against a target of 1000
        producer.flush()
        fired = worker.wait_until(lambda: len(account_alerts()) >= 2 and account_alerts(), "the account alerts")
        worker.wait_for_sweeps(3)                                 # more sweeps: nothing fires twice
        assert len(account_alerts()) == 2
    finally:
        producer.close()
        worker.stop()

    reference = Scorer(config)
    at = now_ms()
    for value in first:
        reference.process(value, at)
    weights = {c: float(arr[c]) for c in users}
    _, snapshot = evaluate_account(None, account, {c: reference.customer(c, at).es for c in users}, at, config,
                                   weights)
    for value in second:
        reference.process(value, at)
    expected, _ = evaluate_account(snapshot, account, {c: reference.customer(c, at).es for c in users}, at, config,
                                   weights)
    assert [a.rule.value for a in expected] == ["account_tier_downgrade", "account_score_drop"]
    for got, want in zip(sorted(fired, key=lambda a: a["rule"], reverse=True), expected):
        want = json.loads(orjson.dumps(want.to_dict()))
        assert {k: v for k, v in got.items() if k not in ("id", "as_of")} == {
            k: v for k, v in want.items() if k != "as_of"}
        assert [d["customer_id"] for d in got["why"]["drivers"]] == sorted(users[:2])
        assert schema_errors("GET", "/alerts/recent", 200, {"alerts": [got]}) == []
        parsed = parse_alert(orjson.dumps(got))
        assert parsed == got and slack_payload(parsed)["text"].endswith(f"account `{account}`: {want['why']['sentence']}")
    # weighted: 0.5 × 1.1 + 0.3 × 1.1 + 0.2 × 100 (the plain mean would be 34.1)
    assert fired[0]["why"]["sentence"].startswith(f"account {account}: mean ES 100.0 → 20.9")
