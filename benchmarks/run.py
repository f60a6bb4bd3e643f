"""One command, one run, the same pre-filled topic: ceilings, the scorer and a naive baseline.

    .venv/bin/python -m benchmarks.run [--events 1000000] [--customers 100000]

Brings up the local stack, fills a fresh topic with realistic generator traffic, then
measures each mode on that same topic and writes `benchmarks/results/<time>.json` plus
`benchmarks/RESULTS.md` (machine, commit, events/s and ratios). Throughput is timed from
each consumer's first message to its last, so start-up is not counted. The machines are
shared and noisy: compare the ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import KafkaProducer  # noqa: E402

from devstack.traffic import TrafficGenerator, TrafficSettings  # noqa: E402
from scoring.timeutil import DAY  # noqa: E402
from devstack import stack as local  # noqa: E402
from streams.clock import now_ms  # noqa: E402
from streams.gc_tuning import quiet_collector  # noqa: E402
from streams.settings import load_settings, prefixed_topics  # noqa: E402
from streams.worker.topics import ensure_topics  # noqa: E402

MODES = ("raw", "noop", "noop-default", "noop-fast", "noop-chunked", "scorer", "scorer-interpreted", "scorer-stock",
         "naive", "raw-batched", "scorer-batched",
         "scale-out", "scorer-cluster", "latency", "core", "core-interpreted", "read", "outbox", "export",
         "scorer-replica0", "scorer-replica1", "scorer-batched-replica0", "scorer-batched-replica1")
# mode -> ENGAGE_REDIS_MIN_REPLICAS of a worker on a Redis primary with one replica (the Sentinel setup's)
REPLICA_MODES = {"scorer-replica0": 0, "scorer-replica1": 1, "scorer-batched-replica0": 0,
                 "scorer-batched-replica1": 1}
CORE_MODES = {"core": "compiled", "core-interpreted": "interpreted"}   # mode -> ENGAGE_CORE of its process
BATCH = 100   # events per batch message in the batched topic (JSON arrays, grouped per partition)


def prefill(bootstrap: str, topic: str, events: int, customers: int, batch: int = 1) -> dict[str, float]:
    """The generator's traffic into `topic`: one event per message, or JSON arrays of `batch` events."""
    from devstack.traffic import batched
    from devstack.producer import partition_of

    traffic = TrafficGenerator(TrafficSettings(customers=customers, accounts=max(1, customers // 20), seed=42))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024,
                             max_request_size=16 * 1024 * 1024)
    began = time.perf_counter()
    size = messages = 0
    start = now_ms()
    stream = traffic.messages(events, start - 25 * DAY, 25 * DAY)
    grouped = batched(stream, batch, "array", partition_of(producer, topic)) if batch > 1 else (
        (message, [message]) for message in stream)
    for message, _ in grouped:
        producer.send(topic, key=message.key or None, value=message.value)
        size += len(message.value)
        messages += 1
    producer.flush()
    producer.close()
    elapsed = time.perf_counter() - began
    return {"events": events, "messages": messages, "seconds": elapsed, "mean_bytes": size / messages}


async def raw_ceiling(bootstrap: str, topic: str, events: int) -> dict[str, float]:
    """aiokafka reading and decoding every message, nothing else."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.subscribe([topic])  # no group: every partition, from the start (auto_offset_reset)
        seen, first = 0, 0.0
        while seen < events:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10000)
            for records in batches.values():
                if not first:
                    first = time.perf_counter()
                for record in records:
                    decoded = _decode(record.value)
                    seen += len(decoded) if isinstance(decoded, list) else 1
        return {"events": seen, "seconds": time.perf_counter() - first}
    finally:
        await consumer.stop()


def _decode(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # the generator's malformed messages: decoded, and refused
        return None


def faust_mode(mode: str, bootstrap: str, redis_url: str, topic: str, events: int, workdir: Path,
               timeout_s: float) -> dict[str, float]:
    env = {**os.environ, "BENCH_TOPIC": topic, "BENCH_EVENTS": str(events), "ENGAGE_KAFKA_BOOTSTRAP": bootstrap,
           "ENGAGE_REDIS_URL": redis_url, "BENCH_DATADIR": str(workdir / f"faust-{mode}"),
           "BENCH_PREFIX": f"bench-naive-{uuid.uuid4().hex[:6]}", "PYTHONPATH": str(ROOT)}
    log = workdir / f"{mode}.log"
    result_file = workdir / f"{mode}.result.json"
    env["BENCH_RESULT"] = str(result_file)
    with open(log, "wb") as err:
        subprocess.run([sys.executable, "-m", "benchmarks.agents", mode], env=env, stdout=err, stderr=err,
                       timeout=timeout_s, cwd=ROOT)
    if not result_file.exists():
        raise RuntimeError(f"{mode} produced no result; see {log}")
    result = json.loads(result_file.read_text())
    return {"events": result["events"], "seconds": result["seconds"]}


def scorer_mode(bootstrap: str, redis_url: str, prefix: str, events: int, workdir: Path,
                timeout_s: float, workers: int = 1, name: str = "scorer", cluster: bool = False,
                consumption: str = "chunked", core: str = "compiled", min_replicas: int = 0) -> dict[str, float]:
    """`engage worker` processes end to end (consumed, validated, applied to Redis, KPIs current).

    With several workers they share the topic's partitions (one consumer group, one key prefix).
    `cluster`: `redis_url` is a node of a Redis Cluster (its memory is not measured).
    `consumption`: ENGAGE_CONSUMPTION of the workers (`stock`: Faust's per-message path).
    `core`: ENGAGE_CORE of the workers (`interpreted`: the core's rules from their source).
    `min_replicas`: ENGAGE_REDIS_MIN_REPLICAS of the workers.
    """
    app_id = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    before = None if cluster else redis_counters(redis_url)
    procs = [_start_worker(bootstrap, redis_url, prefix, app_id, workdir / f"{name}-{i}", cluster, consumption, core,
                           min_replicas) for i in range(workers)]
    first = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            counts = []
            for worker, port in procs:
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker exited; see {workdir}/{name}-*.log")
                counts.append(_metric(port, "engagement_events_consumed_total") or 0.0)
            consumed = sum(counts)
            if consumed and not first:
                first = time.perf_counter()
            if consumed >= events:
                elapsed = time.perf_counter() - first
                rss = [_rss_mb(worker.pid) or 0.0 for worker, _ in procs]
                work = {} if before is None else redis_work(before, redis_counters(redis_url), consumed)
                memory = asyncio.run(_cluster_customers(redis_url, app_id)) if cluster else \
                    asyncio.run(prefix_memory(redis_url, app_id))
                return {"events": int(consumed), "seconds": elapsed, "workers": workers,
                        "worker_peak_rss_mb": max(rss), **work, **memory}
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not finish in time")
    finally:
        for worker, _ in procs:
            worker.terminate()
        for worker, _ in procs:
            worker.wait(timeout=60)


def redis_counters(redis_url: str) -> dict[str, float]:
    """Redis's own counters: CPU seconds (user + sys), commands run (those inside scripts too,
    each under its name), script calls, bytes received from clients."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        cpu, stats, commands = client.info("cpu"), client.info("stats"), client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): float(c["calls"]) for name, c in commands.items()}
    scripts = sum(n for name, n in calls.items() if name in ("evalsha", "eval", "evalsha_ro", "eval_ro"))
    return {"cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), "commands": sum(calls.values()),
            "scripts": scripts, "bytes_in": float(stats["total_net_input_bytes"]),
            **{f"calls_{name}": n for name, n in calls.items()},
            **{f"usec_{name.removeprefix('cmdstat_')}": float(c["usec"]) for name, c in commands.items()}}


def redis_work(before: dict[str, float], after: dict[str, float], events: float) -> dict[str, float]:
    """What Redis did per event over a run: everything it did meanwhile (the worker's loads, writes,
    sweeps and KPI reads; nothing else uses the benchmark's Redis), over the events consumed."""
    return {"redis_cpu_us_per_event": (after["cpu_s"] - before["cpu_s"]) * 1e6 / events,
            "redis_commands_per_event": (after["commands"] - before["commands"]) / events,
            "redis_scripts_per_event": (after["scripts"] - before["scripts"]) / events,
            "redis_bytes_in_per_event": (after["bytes_in"] - before["bytes_in"]) / events,
            **{f"redis_{name}_per_event": (n - before.get(name, 0.0)) / events
               for name, n in after.items() if name.startswith(("calls_", "usec_")) and n > before.get(name, 0.0)}}


async def _cluster_customers(redis_url: str, prefix: str) -> dict[str, float]:
    """How many customers the worker stored on the cluster (its rank sets)."""
    from streams.state.store import RedisStore

    store = RedisStore.from_url(redis_url, prefix, cluster=True)
    try:
        return {"customers": await store.count("rank")}
    finally:
        await store.close()


def _start_worker(bootstrap: str, redis_url: str, prefix: str, app_id: str, base: Path,
                  cluster: bool = False, consumption: str = "chunked",
                  core: str = "compiled", min_replicas: int = 0) -> tuple[subprocess.Popen, int]:
    port = local.free_port()
    env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": bootstrap, "ENGAGE_REDIS_URL": redis_url,
           "ENGAGE_REDIS_CLUSTER": "true" if cluster else "false", "ENGAGE_CONSUMPTION": consumption,
           "ENGAGE_CORE": core, "ENGAGE_REDIS_MIN_REPLICAS": str(min_replicas),
           "ENGAGE_DATA_DIR": str(base.with_suffix(".data")), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "streams.cli", "worker", "--topic-prefix", prefix, "--app-id", app_id,
               "--key-prefix", app_id, "--web-port", str(port), "--loglevel", "warning"]
    with open(base.with_suffix(".log"), "wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), port


def latency_mode(bootstrap: str, redis_url: str, rate: float, seconds: float, customers: int, workdir: Path,
                 partitions: int) -> dict[str, float]:
    """A paced producer at `rate` events/s into a fresh topic one worker already owns; the
    worker's event-time -> applied-in-Redis histogram gives p50/p95/p99 (interpolated within
    buckets, as Prometheus' histogram_quantile does)."""
    prefix = f"bench-lat-{uuid.uuid4().hex[:6]}."
    settings = load_settings({"kafka_bootstrap": bootstrap, "redis_url": redis_url, "partitions": partitions,
                              **prefixed_topics(prefix)})
    ensure_topics(settings)
    worker, port = _start_worker(bootstrap, redis_url, prefix, f"bench-lat-{uuid.uuid4().hex[:6]}",
                                 workdir / "latency")
    try:
        deadline = time.monotonic() + 120
        while (_metric(port, "engagement_assigned_partitions") or 0) < partitions:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"the latency worker never owned its partitions; see {workdir}/latency.log")
            time.sleep(0.2)
        count = int(rate * seconds)
        sent_s = paced_send(bootstrap, settings.events_topic, count, rate, customers)
        deadline = time.monotonic() + 120 + seconds * 4
        while (_metric(port, "engagement_events_consumed_total") or 0) < count:
            if time.monotonic() > deadline:
                raise RuntimeError("the latency worker did not catch up")
            time.sleep(0.2)
        buckets = _histogram(port, "engagement_event_latency_seconds")
        return {"events": count, "seconds": sent_s, "target_rate": rate, "achieved_rate": count / sent_s,
                **{f"p{q}_ms": quantile(buckets, q / 100) * 1000 for q in (50, 95, 99)}}
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def paced_send(bootstrap: str, topic: str, count: int, rate: float, customers: int) -> float:
    """Send `count` timely events at `rate`/s, each stamped with the wall clock at its send.

    Stamping at send (not at its scheduled slot) keeps a producer that falls behind from
    showing up as pipeline latency. No delayed, late, duplicate or malformed events here:
    they would measure the generator, not the pipeline. Returns the seconds spent sending.
    """
    traffic = TrafficGenerator(TrafficSettings(customers=customers, seed=11, delayed_share=0.0, late_share=0.0,
                                               duplicate_share=0.0, malformed_share=0.0))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
    began = time.perf_counter()
    for index, message in enumerate(traffic.messages(count, now_ms(), int(count / rate * 1000))):
        delay = began + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        event = orjson.loads(message.value)
        event["ts"] = now_ms()
        producer.send(topic, key=message.key, value=orjson.dumps(event))
    producer.flush()
    producer.close()
    return time.perf_counter() - began


def _histogram(port: int, name: str) -> list[tuple[float, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = []
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    return sorted(out)


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """histogram_quantile over cumulative (upper bound, count) buckets: linear within a bucket."""
    total = buckets[-1][1]
    if total == 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / max(count - below, 1e-12))
        lower, below = bound, count
    return lower


def core_mode(events: int, customers: int, batch: int = 1000, collector: str = "tuned") -> dict[str, float]:
    """The pure core in memory, no services: generator messages (bytes) in batches of `batch`.

    Two timings over the same messages (generated before the clock starts):
    * `Scorer.process_batch` on one Scorer that keeps every customer: decode, validate, gate,
      apply, alert rules and score card per touched customer (`clocks` = each message's time);
    * what the worker's core does per batch: `unpack`, the split by state shard and
      `scoring.deltas.settle_batch` per shard, which adds standings and deltas. The customers
      it returns (`Stored`) are kept for the next batch, each loaded the way the store loads
      it: only the batch's own event ids among its seen ids (the store's dedup zset is
      emulated outside the timed part), with the running window counts it wrote (its record
      carries them).
    """
    from scoring.config import load_config
    from scoring.deltas import Stored
    from scoring.engine import Outcome, Scorer

    config = load_config()
    traffic = TrafficGenerator(TrafficSettings(customers=customers, accounts=max(1, customers // 20), seed=42))
    start = now_ms() - 25 * DAY
    messages = list(traffic.messages(events, start, 25 * DAY))
    chunks = [messages[i:i + batch] for i in range(0, len(messages), batch)]

    if collector == "tuned":
        quiet_collector()             # as the worker runs: the collector tuned after start-up
    collecting = _collector_time()
    scorer = Scorer(config)
    accepted = 0
    began = time.perf_counter()
    for chunk in chunks:
        result = _core_process_batch(scorer, chunk)
        accepted += sum(1 for r in result.results if r.outcome is Outcome.ACCEPTED)
    process_s = time.perf_counter() - began

    stored: dict[str, Stored] = {}
    seen: dict[str, dict[str, int]] = {}     # the store's dedup zsets
    settle_s = 0.0
    settled_accepted = deltas = 0
    for chunk in chunks:
        now = chunk[-1].at_ms
        wanted: dict[str, list[str]] = {}
        for m in chunk:   # load as RedisStore.load does: the batch's ids among the seen ones
            event = _decode(m.value)
            if isinstance(event, dict) and isinstance(event.get("customer_id"), str):
                wanted.setdefault(event["customer_id"], []).append(str(event.get("event_id")))
        for cid, ids in wanted.items():
            if cid in stored:
                known = seen.get(cid, {})
                stored[cid].state.seen = {e: known[e] for e in ids if e in known}
        began = time.perf_counter()
        results = _core_settle_step(chunk, now, stored, config)
        settle_s += time.perf_counter() - began
        for settled in results:
            stored.update(settled.stored)
            settled_accepted += sum(1 for r in settled.results if r.outcome is Outcome.ACCEPTED)
            deltas += len(settled.deltas)
            for delta in settled.deltas:   # the store's ZADD / ZREMRANGEBYSCORE of the seen ids
                known = seen.setdefault(delta.customer_id, {})
                known.update(delta.seen)
                if delta.seen_floor is not None:
                    for e in [e for e, ts in known.items() if ts < delta.seen_floor]:
                        del known[e]
    gc.callbacks.remove(collecting.callback)
    return {"events": len(messages), "seconds": process_s, "accepted": accepted, "customers": len(scorer.customers),
            "batch": batch, "settle_seconds": settle_s, "settle_accepted": settled_accepted,
            "settle_deltas": deltas, "settle_customers": len(stored),
            "gc_seconds": collecting.seconds, "gc_collections": collecting.count, "collector": collector}


def core_of_build(build: str, events: int, customers: int, collector: str) -> dict[str, float]:
    """`core_mode` in a process of its own, running the `build` of the core's rules (ENGAGE_CORE),
    so that both builds are measured alike in one run."""
    code = ("import json; from benchmarks.run import core_mode; from scoring import build; "
            f"r = core_mode({events}, {customers}, collector={collector!r}); r['build'] = build.CHOSEN; "
            "print(json.dumps(r))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "ENGAGE_CORE": build, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"the {build} core's run failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class _collector_time:
    """Time spent in the garbage collector while it is installed (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds, self.count, self._started = 0.0, 0, 0.0
        gc.callbacks.append(self.callback)

    def callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.count += 1


def _core_process_batch(scorer, chunk: list) -> object:
    """One batch through the reference Scorer (a named frame for the profile)."""
    clocks = [m.at_ms for m in chunk]
    return scorer.process_batch([m.value for m in chunk], clocks[-1], clocks)


def _core_settle_step(chunk: list, now: int, stored: dict, config) -> list:
    """What BatchWriter.write does between its Redis reads and writes (a named frame for the profile)."""
    from scoring.deltas import settle_batch
    from scoring.messages import unpack
    from streams.state.layout import Keys

    by_shard: dict[int, tuple[list, list]] = {}
    for m in chunk:
        for item in unpack(m.value, config):
            if item.event is not None:
                events, clocks = by_shard.setdefault(Keys.shard_of(item.event.customer_id), ([], []))
                events.append(item.event)
                clocks.append(m.at_ms)
    return [settle_batch({c: stored[c] for c in {e.customer_id for e in events} if c in stored}, events, clocks, now,
                         config)
            for events, clocks in by_shard.values()]


def export_mode(redis_url: str, customers: int) -> dict[str, float]:
    """`GET /customers.csv`'s work without HTTP: `customers` customers with the six shipped traits
    each, written as the read mode populates them, then `customers_csv.export` of all of them read
    to its end (rank-set pages, the standings' reads, the CSV encoding). `events` is the rows."""
    from scoring.config import load_config
    from streams.serve import customers_csv
    from streams.state.store import RedisStore

    prefix = f"bench-export-{uuid.uuid4().hex[:6]}"
    filled = asyncio.run(populate(redis_url, prefix, customers, f"{prefix}-", 1.0, traits=True))

    async def export() -> tuple[int, int, float]:
        store = RedisStore.from_url(redis_url, prefix)
        began, rows, size = time.perf_counter(), 0, 0
        try:
            async for chunk in customers_csv.export(store, load_config(), customers_csv.Selection()):
                rows, size = rows + chunk.count(b"\r\n"), size + len(chunk)
        finally:
            await store.close()
        return rows - 1, size, time.perf_counter() - began

    rows, size, seconds = asyncio.run(export())
    if rows != customers:
        raise RuntimeError(f"the export listed {rows} of the {customers} customers")
    return {"events": rows, "seconds": seconds, "bytes": size, **filled}


def outbox_mode(redis_url: str, events: int, customers: int, batch: int = 1000, rounds: int = 4) -> dict[str, float]:
    """What the outbox costs per batch: `BatchWriter.write` (Redis read, core, one script write)
    plus the delete after publishing, over generator batches, recording outputs or not (the
    replay's path), in alternating rounds on fresh prefixes of the same Redis. No Kafka: only the
    outbox's own work differs between the two."""
    from scoring.config import load_config
    from streams.worker.batch import Incoming
    from streams.worker.writer import BatchWriter
    from streams.worker.replay import delete_prefix
    from streams.state.store import RedisStore

    config = load_config()
    seconds = {True: 0.0, False: 0.0}
    outputs = batches = 0

    async def one(record: bool, seed: int) -> None:
        nonlocal outputs, batches
        store = RedisStore.from_url(redis_url, f"bench-outbox-{uuid.uuid4().hex[:8]}")
        writer = BatchWriter(config, store, outputs=record)
        at = now_ms()
        traffic = TrafficGenerator(TrafficSettings(customers=customers, seed=seed))
        messages = list(traffic.messages(events // rounds, at - 5 * DAY, 5 * DAY))
        try:
            for start in range(0, len(messages), batch):
                chunk = [Incoming(m.value, m.key, "events", 0, start + i, at)
                         for i, m in enumerate(messages[start:start + batch])]
                began = time.perf_counter()
                processed = await writer.write(chunk, at)
                await store.acknowledge_outputs(processed.outputs)
                seconds[record] += time.perf_counter() - began
                if record:
                    outputs += len(processed.outputs)
                    batches += 1
        finally:
            await delete_prefix(store)
            await store.close()

    for round_ in range(rounds):
        for record in ((True, False) if round_ % 2 else (False, True)):
            asyncio.run(one(record, round_))
    done = rounds * (events // rounds)
    return {"events": done, "seconds": seconds[True], "seconds_without": seconds[False],
            "batches": batches, "outputs_per_batch": outputs / max(batches, 1)}


# /kpis without as_of is the answer shared for ENGAGE_KPI_INTERVAL_S; with as_of, computed per request.
# The batch lookups POST BATCH_IDS random ids (customers; accounts, as many as there are up to that)
READ_PATHS = {"leaderboard": ("GET", "/leaderboard"), "at_risk": ("GET", "/at-risk"), "kpis": ("GET", "/kpis"),
              "kpis_as_of": ("GET", "/kpis?as_of={at}"), "customer": ("GET", "/customers/{id}"),
              "customers_batch": ("POST", "/customers:batch"), "accounts_batch": ("POST", "/accounts:batch")}
LOOKUPS = ("leaderboard", "at_risk", "kpis", "customer")   # the single reads: O(log n) or shared, target p99 <= 10 ms
BATCH_IDS = 1000


async def populate(redis_url: str, key_prefix: str, customers: int, id_prefix: str,
                   per_customer: float = 2.0, traits: bool = False) -> dict[str, float]:
    """`customers` customers in Redis, written through the worker's own BatchWriter.

    The generator's traffic with uniform activity (`per_customer` events each on average,
    over the last 25 days, the same ids and accounts `engage generate --customers N
    --accounts N/20 --id-prefix P` produces), then one page view for each customer it left
    out, so that every one of the N exists; with `traits`, a `traits` event for every customer
    setting the six shipped traits (what a read of a customer with traits returns); then
    `BatchWriter.sweep` now, so the state is current when a worker takes over.
    """
    from scoring.config import load_config
    from streams.worker.batch import Incoming
    from streams.worker.writer import BatchWriter
    from streams.state.store import RedisStore

    config = load_config()
    store = RedisStore.from_url(redis_url, key_prefix)
    writer = BatchWriter(config, store, outputs=False)
    settings = TrafficSettings(customers=customers, accounts=max(1, customers // 20), prefix=id_prefix,
                               zipf_exponent=0.0, duplicate_share=0.0, malformed_share=0.0, late_share=0.0)
    now = now_ms()
    count = int(customers * per_customer)
    messages = TrafficGenerator(settings).messages(count, now - 25 * DAY, 25 * DAY - 60_000)
    seen: set[bytes] = set()
    written = 0
    began = time.perf_counter()
    try:
        await store.check_layout()
        batch: list = []

        async def flush() -> None:
            nonlocal written
            if batch:
                await writer.write(batch, batch[-1].timestamp_ms)
                written += len(batch)
                batch.clear()

        for message in messages:
            seen.add(message.key)
            batch.append(Incoming(message.value, message.key, timestamp_ms=message.at_ms))
            if len(batch) == 1000:
                await flush()
        await flush()
        for index in range(customers):
            cid = f"{id_prefix}c{index}"
            if cid.encode() not in seen:
                batch.append(Incoming(orjson.dumps({"event_id": f"{id_prefix}p{index}", "customer_id": cid,
                                                    "type": "page_view", "ts": now - 3_600_000}),
                                      cid.encode(), timestamp_ms=now - 3_600_000))
                if len(batch) == 1000:
                    await flush()
        await flush()
        for index in range(customers if traits else 0):
            cid = f"{id_prefix}c{index}"
            batch.append(Incoming(orjson.dumps({"event_id": f"{id_prefix}t{index}", "customer_id": cid,
                                                "type": "traits", "ts": now - 7_200_000, "traits": {
                                                    "plan": ("starter", "growth", "enterprise")[index % 3],
                                                    "owner": f"owner-{index % 40}", "arr": 1200 * (1 + index % 90),
                                                    "seats_bought": 10 + index % 50, "seats_used": 5 + index % 40,
                                                    "renewal_date": "2027-04-01"}}),
                                  cid.encode(), timestamp_ms=now - 7_200_000))
            if len(batch) == 1000:
                await flush()
        await flush()
        processed_s = time.perf_counter() - began
        if traits and not (await store.standings([f"{id_prefix}c0"]))[f"{id_prefix}c0"].traits:
            raise RuntimeError("the populated customers have no traits: the traits events were not applied")
        await writer.sweep(now_ms())
        return {"populate_events": written, "populate_seconds": processed_s,
                "populate_sweep_seconds": time.perf_counter() - began - processed_s,
                "customers": len(await store.customer_ids())}
    finally:
        await store.close()


class SlowLog:
    """Redis's slow log (commands over 1 ms) over a span of the read mode, summed per command.

    A read waits for whatever Redis is running when it arrives; the slow log names those
    commands (a script by its file in streams/lua), so the read figures come with their cause.
    """

    THRESHOLD_US = 1000

    def __init__(self, redis_url: str) -> None:
        import hashlib

        import redis

        self.redis = redis.Redis.from_url(redis_url)
        self.scripts = {hashlib.sha1(path.read_bytes()).hexdigest(): path.stem
                        for path in (ROOT / "streams" / "state" / "lua").glob("*.lua")}
        self.entries: list[dict] = []     # redis-py's parsed SLOWLOG GET: "command" is the bytes of its words
        self.seconds = 0.0

    def start(self) -> None:
        self.redis.config_set("slowlog-max-len", 100_000)
        self.redis.config_set("slowlog-log-slower-than", self.THRESHOLD_US)
        self.redis.slowlog_reset()
        self._began = time.perf_counter()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._began
        self.entries = self.redis.slowlog_get(100_000)
        self.redis.config_set("slowlog-log-slower-than", 10_000)    # Redis's default again
        self.redis.close()

    def summary(self) -> dict[str, float]:
        """slow_<command>_count / _ms / _max_ms, and slow_busy_share: the span's share held by them."""
        out: dict[str, float] = {"slow_span_seconds": self.seconds}
        held_ms = 0.0
        for entry in self.entries:
            words = entry["command"].decode(errors="replace").split() or ["?"]
            name = words[0].lower()
            if name.startswith("evalsha") and len(words) > 1:
                name = f"script_{self.scripts.get(words[1], words[1][:8])}"
            ms = entry["duration"] / 1000
            held_ms += ms
            out[f"slow_{name}_count"] = out.get(f"slow_{name}_count", 0) + 1
            out[f"slow_{name}_ms"] = out.get(f"slow_{name}_ms", 0.0) + ms
            out[f"slow_{name}_max_ms"] = max(out.get(f"slow_{name}_max_ms", 0.0), ms)
        out["slow_busy_share"] = held_ms / 1000 / self.seconds if self.seconds else 0.0
        return out


def read_mode(bootstrap: str, redis_url: str, customers: int, requests: int, rate: float, workdir: Path,
              partitions: int, per_customer: float = 2.0, computed_requests: int | None = None,
              api_processes: int = 1, traits: bool = False) -> dict[str, float]:
    """p50/p95/p99 of the API's reads against one `engage worker` while it consumes live traffic.

    `customers` customers are written through BatchWriter into the worker's key prefix
    first; then the worker starts, `engage generate` sends live (now-stamped) traffic for the
    same customers at `rate` events/s, and `requests` GETs of each read are timed one after
    another over one keep-alive connection, round robin in two phases: first the lookups
    (LOOKUPS: /leaderboard, /at-risk, /kpis, the answer shared for the KPI interval, and
    /customers/{id} of a random customer), then the reads computed per request:
    /kpis?as_of=now and POST /customers:batch and /accounts:batch (BATCH_IDS random ids
    each), `computed_requests` of each (default `requests`: at a million customers an account
    batch takes ~0.7 s). Every reply must be 200. Redis's slow log over the lookups phase says
    what held Redis while they waited (`slow_*`: the commands over 1 ms, by name or script).
    """
    import http.client
    import random

    run = f"bench-read-{uuid.uuid4().hex[:6]}"
    prefix = f"{run}."
    id_prefix = f"r{uuid.uuid4().hex[:6]}-"
    settings = load_settings({"kafka_bootstrap": bootstrap, "redis_url": redis_url, "partitions": partitions,
                              **prefixed_topics(prefix)})
    ensure_topics(settings)
    filled = asyncio.run(populate(redis_url, run, customers, id_prefix, per_customer, traits))
    worker, port = _start_worker(bootstrap, redis_url, prefix, run, workdir / "read")
    api_port = local.free_port()
    with open(workdir / "read-api.log", "wb") as log:
        reader = subprocess.Popen([sys.executable, "-m", "streams.cli", "api", "--key-prefix", run, "--web-port",
                                   str(api_port), "--processes", str(api_processes)], env={**os.environ, "ENGAGE_REDIS_URL": redis_url,
                                                        "PYTHONPATH": str(ROOT)},
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT)}
    sender = None
    try:
        deadline = time.monotonic() + 120
        while (_metric(port, "engagement_assigned_partitions") or 0) < partitions or not _answers(api_port):
            if time.monotonic() > deadline or worker.poll() is not None or reader.poll() is not None:
                raise RuntimeError(f"the read worker never owned its partitions (or engage api never answered); "
                                   f"see {workdir}/read*.log")
            time.sleep(0.2)
        with open(workdir / "read-generate.log", "wb") as log:
            sender = subprocess.Popen(
                [sys.executable, "-m", "devstack.cli", "generate", "--topic-prefix", prefix, "--count",
                 str(int(rate * 3600)), "--rate", str(rate), "--customers", str(customers), "--accounts",
                 str(max(1, customers // 20)), "--id-prefix", id_prefix, "--quiet"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while not _metric(port, "engagement_events_consumed_total"):
            if time.monotonic() > deadline or worker.poll() is not None or sender.poll() is not None:
                raise RuntimeError(f"the read worker consumed nothing; see {workdir}/read*.log")
            time.sleep(0.2)
        rng = random.Random(5)
        servers = {"": port, "api_": api_port}      # the worker itself, and `engage api` beside it
        connections = {tag: http.client.HTTPConnection("127.0.0.1", p, timeout=30) for tag, p in servers.items()}
        samples: dict[str, list[float]] = {f"{tag}{name}": [] for tag in servers for name in READ_PATHS}
        consumed = _metric(port, "engagement_events_consumed_total") or 0.0
        began = time.perf_counter()
        # two phases, each round robin: the lookups of a live product first, then the reads that
        # compute per request (a Lua script over every shard, or a thousand ids): one of those holds
        # Redis for tens of milliseconds, so interleaved it would time the other reads' queueing
        phases = [([name for name in READ_PATHS if name in LOOKUPS], requests),
                  ([name for name in READ_PATHS if name not in LOOKUPS], computed_requests or requests)]
        slow = SlowLog(redis_url)       # over the lookups' counted rounds only
        for phase, names, round_ in ((p, names, r) for p, (names, count) in enumerate(phases) for r in range(count + 3)):
            if (phase, round_) == (0, 3):
                slow.start()
            elif (phase, round_) == (1, 0):
                slow.stop()
            for name in names:       # three rounds of warm-up per phase, not counted
                method, path = READ_PATHS[name]
                url = path.format(id=f"{id_prefix}c{rng.randrange(customers)}", at=now_ms())
                body = None
                if name == "customers_batch":
                    body = orjson.dumps({"ids": [f"{id_prefix}c{i}" for i in rng.sample(range(customers),
                                                                                       min(BATCH_IDS, customers))]})
                elif name == "accounts_batch":
                    accounts = max(1, customers // 20)
                    body = orjson.dumps({"ids": [f"{id_prefix}a{i}" for i in rng.sample(range(accounts),
                                                                                       min(BATCH_IDS, accounts))]})
                for tag, connection in connections.items():
                    at = time.perf_counter()
                    connection.request(method, url, body=body)
                    response = connection.getresponse()
                    answer = response.read()
                    elapsed = time.perf_counter() - at
                    if response.status != 200:
                        raise RuntimeError(f"{method} {url} ({tag or 'worker'}): {response.status} {answer[:200]!r}")
                    if body is not None and orjson.loads(answer)["unknown"]:
                        raise RuntimeError(f"{method} {url} ({tag or 'worker'}): ids of the populated state unknown")
                    if round_ >= 3:
                        samples[f"{tag}{name}"].append(elapsed * 1000)
        seconds = time.perf_counter() - began
        for connection in connections.values():
            connection.close()
        during = (_metric(port, "engagement_events_consumed_total") or 0.0) - consumed
        out: dict[str, float] = {"events": requests * len(READ_PATHS), "seconds": seconds, "requested_customers":
                                 customers, "live_rate": rate, "consumed_during_reads": during,
                                 "lookup_requests": requests, "computed_requests": computed_requests or requests,
                                 "api_processes": api_processes,
                                 **filled, **slow.summary()}
        for name, values in samples.items():
            values.sort()
            for q in (50, 95, 99):   # nearest rank
                out[f"{name}_p{q}_ms"] = values[max(0, math.ceil(q / 100 * len(values)) - 1)]
            out[f"{name}_max_ms"] = values[-1]
        return out
    finally:
        if sender is not None:
            sender.terminate()
            sender.wait(timeout=60)
        for process in (reader, worker):
            process.terminate()
            process.wait(timeout=60)
        asyncio.run(_drop_prefix(redis_url, run))


async def _drop_prefix(redis_url: str, prefix: str) -> None:
    """Every key under `prefix`, unlinked a chunk per round trip (a benchmark state is large)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        chunk = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            chunk.append(key)
            if len(chunk) == 5000:
                await client.unlink(*chunk)
                chunk.clear()
        if chunk:
            await client.unlink(*chunk)
    finally:
        await client.aclose()


async def dormant_member_bytes(redis_url: str, members: int = 20_000) -> dict[str, object]:
    """Redis bytes per dormant member: joined long ago, nothing left in the window.

    Built through the worker's own BatchWriter into a fresh key prefix: a `member_joined`
    (with an account) 400 days ago, then `BatchWriter.sweep` now, which evicts the buckets
    and re-scores every due member, so that nothing is due any more. Measured as the
    `used_memory` delta per member (own keys plus their entries in the shared sorted sets,
    sets and sums), with MEMORY USAGE of one member's own keys beside it. The prefix is
    deleted afterwards.
    """
    from scoring.config import load_config
    from scoring.engine import Outcome
    from streams.worker.batch import Incoming
    from streams.worker.writer import BatchWriter
    from streams.state.store import RedisStore

    config = load_config()
    prefix = f"bench-dormant-{uuid.uuid4().hex[:6]}"
    store = RedisStore.from_url(redis_url, prefix)
    writer = BatchWriter(config, store, outputs=False)
    now = now_ms()
    joined = now - 400 * DAY
    try:
        before = (await store.redis.info("memory"))["used_memory"]
        await store.check_layout()
        for start in range(0, members, 1000):
            ids = [f"m{start + i:09d}" for i in range(min(1000, members - start))]
            batch = [Incoming(orjson.dumps({"event_id": f"j-{cid}", "customer_id": cid, "type": "member_joined",
                                            "ts": joined, "account_id": "a1"}), cid.encode(), timestamp_ms=joined)
                     for cid in ids]
            processed = await writer.write(batch, joined)
            if processed.count(Outcome.ACCEPTED) != len(ids):
                raise RuntimeError(f"dormant members: {processed.rejections()[:1]} (expected every join accepted)")
        await writer.sweep(now)
        after = (await store.redis.info("memory"))["used_memory"]
        cid = "m000000000"
        own = {"record": store.keys.facts(cid), "seen": store.keys.seen(cid)}
        usage = {name: await store.redis.memory_usage(key, samples=0) or 0 for name, key in own.items()}
        record = (await store.load([cid])).stored[cid]
        return {"dormant_members": members, "redis_bytes_per_dormant_member": (after - before) / members,
                "dormant_record_memory_usage": sum(usage.values()), "dormant_member_keys": usage,
                "dormant_record_buckets": len(record.state.buckets),
                "dormant_due_now": await store.due_count(now), "dormant_due_later": await store.count("due"),
                "dormant_members_indexed": await store.count("members")}
    finally:
        await store.close()
        await _drop_prefix(redis_url, prefix)


async def prefix_memory(redis_url: str, prefix: str) -> dict[str, float]:
    """Redis bytes per customer under a key prefix: MEMORY USAGE of every key, by kind.

    A customer's own keys (its record and its seen ids) are counted per
    customer; the shared ones (sorted sets, sums, per-bucket totals, account sets) are
    divided by the customers. `redis_bytes_per_customer` is all of it.
    """
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    own_kinds = ("f", "seen")
    by_kind: dict[str, int] = {}
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 2000):
            chunk = keys[start:start + 2000]
            async with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.memory_usage(key, samples=0)
                sizes = await pipe.execute()
            for key, size in zip(chunk, sizes):
                parts = key.decode().split(":")
                kind = parts[2] if len(parts) > 2 and parts[1].startswith("{") else parts[1]
                kind = kind if kind in own_kinds else "shared"
                by_kind[kind] = by_kind.get(kind, 0) + (size or 0)
        customers = sum(1 for key in keys if key.decode().split(":")[2:3] == ["f"])
        per = max(customers, 1)
        own = sum(v for k, v in by_kind.items() if k in own_kinds)
        return {"customers": customers, "redis_bytes_per_customer": sum(by_kind.values()) / per,
                "redis_bytes_per_customer_own_keys": own / per, "redis_bytes_shared_per_customer": by_kind.get("shared", 0) / per,
                **{f"redis_bytes_per_customer_{k}": by_kind.get(k, 0) / per for k in own_kinds}}
    finally:
        await client.aclose()


def _answers(port: int) -> bool:
    """Whether an HTTP server on the port says it is ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    # code that is not the commit's: say so (what was measured is the working tree)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "scoring", "streams",
                            "benchmarks"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "kafka": local.KAFKA_VERSION,
            "commit": (commit.stdout.strip() or "unknown") + (" + uncommitted changes" if dirty else "")}


def rates(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """events/s of each throughput mode (latency and read measure time per request, not throughput);
    `core` gives two: `core` (Scorer.process_batch) and `core-settle` (settle_batch)."""
    rate = {m: r["events"] / r["seconds"] for m, r in results.items() if r.get("seconds") and m not in ("latency", "read")}
    for mode in CORE_MODES:
        core = results.get(mode, {})
        if core.get("settle_seconds"):
            rate[f"{mode}-settle"] = core["events"] / core["settle_seconds"]
    return rate


def markdown(report: dict[str, object]) -> str:
    results: dict[str, dict[str, float]] = report["results"]  # type: ignore[assignment]
    rate = rates(results)
    m = report["machine"]
    topic = "no topic (only in-memory modes)"
    if "prefill" in report:
        topic = (f"Topic: {report['events']:,} events, {report['customers']:,} customers, "
                 f"{report['partitions']} partitions, {report['prefill']['mean_bytes']:.0f} bytes per message on average"
                 + (f"; the batched topic holds the same events in JSON arrays of {BATCH} "
                    f"({report['prefill_batched']['messages']:,} messages)" if "prefill_batched" in report else ""))
    lines = [
        "# Benchmark results", "",
        f"Run {report['started']} on {m['cpus']} × {m['cpu']}, Python {m['python']}, Kafka {m['kafka']}, "
        f"commit `{m['commit']}`. {topic}.",
        "Command: `" + report["command"] + "`. Kafka, Redis, the producer and the workers share the "
        f"{m['cpus']} cores (1-minute load average {report.get('load_average_at_start', 0):.1f} at the start, "
        f"{report.get('load_average_at_end', 0):.1f} at the end).", "",
        "| mode | events | seconds | events/s | × raw ceiling | × framework ceiling | × naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in [m for mode in MODES for m in ((mode, f"{mode}-settle") if mode in CORE_MODES else (mode,))]:
        if mode not in rate:
            continue
        settle = mode.endswith("-settle")
        r = results[mode.removesuffix("-settle")]
        seconds = r["settle_seconds"] if settle else r["seconds"]
        ratio = lambda base: f"{rate[mode] / rate[base]:.2f}" if base in rate else "–"  # noqa: E731
        lines.append(f"| {mode} | {r['events']:,} | {seconds:.2f} | {rate[mode]:,.0f} | {ratio('raw')} | "
                     f"{ratio('noop')} | {ratio('naive')} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for target, value, met in targets(results, rate):
        lines.append(f"| {target} | {value} | {met} |")
    read = results.get("read")
    if read:
        lines += ["", f"Reads against one worker consuming live traffic ({read['live_rate']:,.0f} events/s sent, "
                      f"{read['consumed_during_reads']:,.0f} consumed during the {read['seconds']:.0f} s of reads: "
                      f"{read['consumed_during_reads'] / read['seconds']:,.0f}/s), "
                      f"{read['customers']:,} customers in Redis (written through BatchWriter: "
                      f"{read['populate_events']:,} events in {read['populate_seconds']:.0f} s, then a due sweep "
                      f"of {read['populate_sweep_seconds']:.0f} s), "
                      f"{read.get('lookup_requests', read['events'] // len(READ_PATHS)):,} requests of each lookup "
                      f"and {read.get('computed_requests', read['events'] // len(READ_PATHS)):,} of each read "
                      f"computed per request, one at a time:", "",
                  "| read | served by | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
        for name, (method, path) in READ_PATHS.items():
            for tag, server in (("", "the worker"), ("api_", "`engage api`")):
                key = f"{tag}{name}"
                lines.append(f"| `{method} {path}` | {server} | {read[f'{key}_p50_ms']:.1f} | "
                             f"{read[f'{key}_p95_ms']:.1f} | {read[f'{key}_p99_ms']:.1f} | {read[f'{key}_max_ms']:.1f} |")
        slow = sorted((k[len("slow_"):-len("_count")] for k in read if k.startswith("slow_") and k.endswith("_count")),
                      key=lambda name: -read[f"slow_{name}_ms"])
        if "slow_span_seconds" in read:
            lines += ["", f"What held Redis during the {read['slow_span_seconds']:.0f} s of lookups (its slow log, "
                          f"commands over {SlowLog.THRESHOLD_US / 1000:.0f} ms): "
                          f"{100 * read['slow_busy_share']:.1f} % of the time in all"
                          + "".join(f"; `{name}` {read[f'slow_{name}_count']:.0f}× for {read[f'slow_{name}_ms']:.0f} ms, "
                                    f"the longest {read[f'slow_{name}_max_ms']:.1f} ms" for name in slow[:6]) + "."]
    scorer = results.get("scorer", {})
    if scorer.get("redis_cpu_us_per_event"):
        redis_ceiling = 1e6 / scorer["redis_cpu_us_per_event"]
        lines += ["", f"Redis's work per event in `scorer` (its INFO counters over the run, loads, writes, sweeps "
                      f"and KPI reads together): {scorer['redis_cpu_us_per_event']:.1f} µs of CPU, "
                      f"{scorer['redis_commands_per_event']:.1f} commands (those inside scripts too), "
                      f"{scorer['redis_scripts_per_event']:.2f} script calls and "
                      f"{scorer['redis_bytes_in_per_event']:,.0f} bytes received. By command: "
                      + ", ".join(f"`{k[len('redis_calls_'):-len('_per_event')].upper()}` {v:.2f}"
                                  for k, v in sorted(((k, v) for k, v in scorer.items() if k.startswith("redis_calls_")),
                                                     key=lambda kv: -kv[1]) if v >= 0.01) + ". Redis's time per "
                      "event by command (its commandstats; a script's time includes the commands it runs): "
                      + ", ".join(f"`{k[len('redis_usec_'):-len('_per_event')].upper()}` {v:.1f} µs"
                                  for k, v in sorted(((k, v) for k, v in scorer.items() if k.startswith("redis_usec_")),
                                                     key=lambda kv: -kv[1]) if v >= 0.1) + ".", "",
                  "| limit | events/s | the scorer's share |", "|---|---|---|"]
        if "raw" in rate:
            lines.append(f"| raw consume ceiling (aiokafka + orjson, no work) | {rate['raw']:,.0f} | "
                         f"{rate['scorer'] / rate['raw']:.3f} |")
        lines.append(f"| one Redis core, this layout's work per event (1 s / CPU per event) | {redis_ceiling:,.0f} | "
                     f"{rate['scorer'] / redis_ceiling:.3f} |")
        for mode in ("scale-out", "scorer-cluster"):
            if mode in rate:
                lines.append(f"| `{mode}` measured | {rate[mode]:,.0f} | {rate['scorer'] / rate[mode]:.3f} |")
    if scorer:
        lines += ["", f"Scorer memory: {scorer.get('redis_bytes_per_customer', 0):,.0f} Redis bytes per customer "
                      f"({scorer.get('customers', 0):,} customers; MEMORY USAGE of every key of the worker's prefix "
                      f"over its customers): own keys {scorer.get('redis_bytes_per_customer_own_keys', 0):,.0f} "
                      f"(the record {scorer.get('redis_bytes_per_customer_f', 0):,.0f}, seen ids "
                      f"{scorer.get('redis_bytes_per_customer_seen', 0):,.0f}), shared sorted sets, sums and totals "
                      f"{scorer.get('redis_bytes_shared_per_customer', 0):,.0f}; worker peak RSS "
                      f"{scorer.get('worker_peak_rss_mb') or 0:,.0f} MB."]
        if "redis_bytes_per_dormant_member" in scorer:
            keys = scorer.get("dormant_member_keys", {})
            lines += ["", f"Dormant members ({scorer['dormant_members']:,}, joined 400 days ago through BatchWriter, "
                          f"then swept; {scorer.get('dormant_due_now', 0):,} due after the sweep): "
                          f"{scorer['redis_bytes_per_dormant_member']:,.0f} Redis bytes each (used_memory delta); "
                          f"one member's own keys {scorer['dormant_record_memory_usage']:,} B by MEMORY USAGE ("
                          + ", ".join(f"{k} {v:,}" for k, v in keys.items()) + "), the rest is its entries in the "
                          "shared sorted sets and sets."]
    outbox = results.get("outbox")
    if outbox:
        lines += ["", f"Outbox: {outbox['events']:,} generator events through `BatchWriter.write` and the "
                      f"delete after publishing, batches of 1,000, on a single Redis, recording outputs "
                      f"({outbox['outputs_per_batch']:,.0f} per batch) or not, in alternating rounds: "
                      f"{outbox['seconds'] / outbox['batches'] * 1000:,.1f} ms against "
                      f"{outbox['seconds_without'] / outbox['batches'] * 1000:,.1f} ms per batch "
                      f"({outbox['seconds'] / outbox['seconds_without']:.2f}×)."]
    core = results.get("core")
    if core:
        collector = ("the collector tuned as the worker's (streams/gc_tuning.py)" if core.get("collector") == "tuned"
                     else "CPython's default collector (--core-collector default)")
        share = 100 * core.get("gc_seconds", 0) / (core["seconds"] + core["settle_seconds"])
        lines += ["", f"Core: {core['events']:,} generator messages ({core['customers']:,} customers touched of "
                      f"{report.get('core_customers', 0):,}), batches of {core['batch']:,}, one process, no services; "
                      f"{collector}: {core.get('gc_seconds', 0):.2f} s in {core.get('gc_collections', 0):,} "
                      f"collections ({share:.1f} % of the timed work). Each core mode runs in a process of "
                      f"its own: `core` {core.get('build', 'compiled')}, `core-interpreted` "
                      f"{results.get('core-interpreted', {}).get('build', 'not run')}."]
    lines += ["", "Modes: `raw` aiokafka + orjson only; `noop` a no-op Faust agent with the stock path's settings "
                  "(`take_events` batches; the old framework ceiling); `noop-default` the same agent iterating per "
                  "event with Faust's defaults; `noop-fast` the no-op agent on the benchmark transport "
                  "(benchmarks/fast_transport.py, per event); `noop-chunked` the no-op agent on the worker's "
                  "consumption path (streams/worker/kafka_transport.py: one event per fetched chunk); "
                  "`scorer` one `engage worker` end to end (chunked consumption, the default); `scorer-stock` the same "
                  "with ENGAGE_CONSUMPTION=stock; `scorer-interpreted` the same worker with ENGAGE_CORE=interpreted (the core's rules run from their source, not the compiled build); `naive` per-event agent with one Redis round trip "
                  "per read and write of a JSON document per customer; `raw-batched` / `scorer-batched` the same "
                  "on the batched topic; `scale-out` two workers sharing the topic; `scorer-cluster` one worker "
                  "with its state on the local three-master Redis Cluster (same topic); `latency` a paced producer at "
                  "80 % of the scorer's rate (p50/p95/p99 of event time -> applied in Redis, from the worker's "
                  "histogram); `core` the pure core in memory (`Scorer.process_batch`, bytes in), `core-settle` "
                  "the worker's core step (`unpack`, split by state shard, `settle_batch`: standings and deltas "
                  "too), both on the compiled core; `core-interpreted` and `core-interpreted-settle` the same "
                  "on the interpreted one; `read` API read latency against a consuming worker; `outbox` the worker's batch step with and "
                  "without recording outputs (no Kafka); `export` the CSV export of `--export-customers` customers with "
                  "traits, without HTTP (events: rows).", "",
              "What stands in the way of the targets that are not met, with the profiles: `benchmarks/PROFILE.md`.", ""]
    return "\n".join(lines)


def targets(results: dict[str, dict[str, float]], rate: dict[str, float]) -> list[tuple[str, str, str]]:
    """The issue's targets against this run's numbers (ratios within the run)."""
    out = []

    def add(name: str, value: float | None, fmt: str, ok: bool | None) -> None:
        out.append((name, "–" if value is None else fmt.format(value), "–" if ok is None else ("yes" if ok else "no")))

    ratio = lambda a, b: rate[a] / rate[b] if a in rate and b in rate else None  # noqa: E731
    r = ratio("noop-chunked", "noop-default")
    add("no-op agent on the worker's consumption path ≥ 3 × Faust defaults per event", r, "{:.2f}×",
        None if r is None else r >= 3)
    r = ratio("noop", "noop-default")
    add("(the stock path's no-op agent / Faust defaults)", r, "{:.2f}×", None)
    r = ratio("noop-fast", "noop-default")
    add("(benchmark transport, per event / Faust defaults)", r, "{:.2f}×", None)
    s1 = rate.get("scorer")
    add("scorer, one event per message ≥ 50,000 events/s per worker", s1, "{:,.0f}/s",
        None if s1 is None else s1 >= 50_000)
    r = ratio("scorer", "scorer-batched")
    add("scorer, one event per message = batch messages", r, "{:.2f}×", None if r is None else r >= 0.9)
    r = ratio("scorer", "scorer-stock")
    add("(scorer: chunked / stock consumption)", r, "{:.2f}×", None)
    r = ratio("scorer", "noop-chunked")
    add("(scorer / its no-op agent on the same path)", r, "{:.3f}×", None)
    b, rb = rate.get("scorer-batched"), ratio("scorer-batched", "raw-batched")
    add("batched: scorer ≥ 100,000 events/s", b, "{:,.0f}/s", None if b is None else b >= 100_000)
    add("batched: or scorer ≥ 0.5 × raw ceiling (batched)", rb, "{:.3f}×", None if rb is None else rb >= 0.5)
    for mode, name in (("core", "core: `Scorer.process_batch`"), ("core-settle", "core: `settle_batch` (+ standings, deltas)")):
        c = rate.get(mode)
        out.append((f"{name} ≥ 100,000 events/s", "–" if c is None else f"{c:,.0f}/s ({c / 100_000:.3f}× the target)",
                    "–" if c is None else ("yes" if c >= 100_000 else "no")))
    for compiled, interpreted in (("core", "core-interpreted"), ("core-settle", "core-interpreted-settle"),
                                  ("scorer", "scorer-interpreted")):
        r = ratio(compiled, interpreted)
        add(f"({compiled}: compiled / interpreted core)", r, "{:.2f}×", None)
    work = results.get("scorer", {})
    cpu, commands, written = (work.get(k) for k in ("redis_cpu_us_per_event", "redis_commands_per_event",
                                                     "redis_bytes_in_per_event"))
    add("Redis CPU ≤ 8 µs per event (scorer)", cpu, "{:.1f} µs", None if cpu is None else cpu <= 8)
    add("≤ 3 Redis commands per event (scorer, inside scripts too)", commands, "{:.1f}",
        None if commands is None else commands <= 3)
    add("≤ 200 B written to Redis per event (scorer, bytes received)", written, "{:,.0f} B",
        None if written is None else written <= 200)
    lat = results.get("latency", {})
    p99 = lat.get("p99_ms")
    add("p99 ≤ 100 ms at 80 % load", p99, "{:.0f} ms", None if p99 is None else p99 <= 100)
    if lat:
        out.append(("(latency p50 / p95)", f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} ms at "
                    f"{lat['achieved_rate']:,.0f} events/s", "–"))
    read = results.get("read")
    for name, (method, path) in READ_PATHS.items():
        if not read:
            break
        limit = 20 if method == "POST" else 10       # targets: 1,000 ids in 20 ms, one read in 10 ms
        what = f"{BATCH_IDS:,} ids " if method == "POST" else ""
        for tag, server in (("", "worker"), ("api_", "engage api")):
            p99 = read[f"{tag}{name}_p99_ms"]
            met = "no" if p99 > limit else ("yes" if read["customers"] >= 1_000_000 else "– (fewer than 1 M customers)")
            out.append((f"read p99 ≤ {limit} ms at 1,000,000 customers: `{method} {path}` {what}({server})",
                        f"{p99:.1f} ms at {read['customers']:,} customers", met))
    active = results.get("scorer", {}).get("redis_bytes_per_customer")
    add("≤ 1 KB Redis per active customer", active, "{:,.0f} B", None if active is None else active <= 1024)
    dormant = results.get("scorer", {}).get("redis_bytes_per_dormant_member")
    add("≤ 64 B Redis per dormant member", dormant, "{:,.0f} B", None if dormant is None else dormant <= 64)
    r = ratio("scale-out", "scorer")
    add("scale-out: 2 workers ≥ 1.6 × 1 worker (same 2 cores)", r, "{:.2f}×", None if r is None else r >= 1.6)
    r = ratio("scorer-cluster", "scorer")
    add("Redis Cluster (3 masters) / single Redis, one worker (same 2 cores)", r, "{:.2f}×", None)
    for kind, waited, unwaited in (("one event per message", "scorer-replica1", "scorer-replica0"),
                                   ("batch messages", "scorer-batched-replica1", "scorer-batched-replica0")):
        r = ratio(waited, unwaited)
        add(f"waiting for one Redis replica costs ≤ 10 % ({kind}: MIN_REPLICAS 1 / 0)", r, "{:.2f}×",
            None if r is None else r >= 0.9)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--naive-events", type=int, default=50_000, help="the naive baseline is slow: cap its run")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--markdown", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="length of the paced latency run")
    parser.add_argument("--latency-rate", type=float, default=None,
                        help="events/s of the latency run (default: 80 %% of the scorer's measured rate)")
    parser.add_argument("--dormant", type=int, default=20_000, help="dormant members written for the memory probe")
    parser.add_argument("--core-events", type=int, default=None, help="messages of the core mode (default: --events)")
    parser.add_argument("--core-collector", choices=("tuned", "default"), default="tuned",
                        help="the core mode's garbage collector: the worker's tuning, or CPython's default (A/B)")
    parser.add_argument("--core-customers", type=int, default=50_000, help="generator customers of the core mode")
    parser.add_argument("--read-customers", type=int, default=100_000,
                        help="customers written through BatchWriter before the read mode's worker starts")
    parser.add_argument("--read-events-per-customer", type=float, default=2.0,
                        help="generator events per customer (on average) when populating the read mode's state")
    parser.add_argument("--read-requests", type=int, default=500, help="timed requests of each lookup")
    parser.add_argument("--read-computed-requests", type=int, default=None,
                        help="timed requests of each read computed per request (default: --read-requests)")
    parser.add_argument("--read-api-processes", type=int, default=1,
                        help="processes of the `engage api` beside the worker in the read mode (its --processes)")
    parser.add_argument("--export-customers", type=int, default=200_000,
                        help="customers (with traits) the export mode writes, then exports as CSV")
    parser.add_argument("--read-traits", action="store_true",
                        help="give every populated customer the six shipped traits (plan, owner, ARR, seats, renewal)")
    parser.add_argument("--read-rate", type=float, default=200.0,
                        help="events/s of live traffic the worker consumes during the read mode")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(MODES)})")

    report: dict[str, object] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "events": args.events,
        "customers": args.customers, "partitions": args.partitions, "machine": machine(),
        "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average_at_start": os.getloadavg()[0],
    }
    results: dict[str, dict[str, float]] = {}
    for mode in [m for m in modes if m in CORE_MODES]:   # first: no worker or producer of this run competes
        print(f"measuring {mode} ...", file=sys.stderr)
        report["core_customers"] = args.core_customers
        results[mode] = core_of_build(CORE_MODES[mode], args.core_events or args.events, args.core_customers,
                                      args.core_collector)
    service_modes = [m for m in modes if m not in CORE_MODES]
    if service_modes:
        running = local.up(log=lambda line: print(line, file=sys.stderr))
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        settings = load_settings({"kafka_bootstrap": running.kafka_bootstrap, "redis_url": running.redis_url,
                                  "partitions": args.partitions, **prefixed_topics(prefix)})
        workdir = Path(running.directory).parent / "bench" / prefix.rstrip(".")
        workdir.mkdir(parents=True, exist_ok=True)
        if set(service_modes) - {"latency", "read", "outbox"}:   # those send to topics of their own (or none)
            ensure_topics(settings)
            print(f"pre-filling {settings.events_topic} with {args.events:,} events ...", file=sys.stderr)
            report["prefill"] = prefill(running.kafka_bootstrap, settings.events_topic, args.events, args.customers)
        batched_prefix = f"{prefix}batched."
        batched = dataclasses.replace(settings, **prefixed_topics(batched_prefix))
        if {"raw-batched", "scorer-batched", "scorer-batched-replica0", "scorer-batched-replica1"} & set(modes):
            ensure_topics(batched)
            print(f"pre-filling {batched.events_topic} with the same events in arrays of {BATCH} ...", file=sys.stderr)
            report["prefill_batched"] = prefill(running.kafka_bootstrap, batched.events_topic, args.events,
                                                args.customers, batch=BATCH)
    for mode in service_modes:
        print(f"measuring {mode} ...", file=sys.stderr)
        if mode in ("raw", "raw-batched"):
            topic = settings.events_topic if mode == "raw" else batched.events_topic
            results[mode] = asyncio.run(raw_ceiling(running.kafka_bootstrap, topic, args.events))
        elif mode in ("scorer", "scorer-interpreted", "scorer-stock", "scorer-batched", "scale-out"):
            results[mode] = scorer_mode(running.kafka_bootstrap, running.redis_url,
                                        batched_prefix if mode == "scorer-batched" else prefix, args.events, workdir,
                                        args.timeout, workers=2 if mode == "scale-out" else 1, name=mode,
                                        consumption="stock" if mode == "scorer-stock" else "chunked",
                                        core="interpreted" if mode == "scorer-interpreted" else "compiled")
            if mode == "scorer":
                results[mode].update(asyncio.run(dormant_member_bytes(running.redis_url, args.dormant)))
        elif mode in REPLICA_MODES:   # the same topics, state on a primary with one replica, waited for or not
            replicated = local.sentinel_up(Path(running.directory), log=lambda line: print(line, file=sys.stderr))
            results[mode] = scorer_mode(running.kafka_bootstrap, replicated.services["redis-primary"].address,
                                        batched_prefix if "batched" in mode else prefix, args.events, workdir,
                                        args.timeout, name=mode, min_replicas=REPLICA_MODES[mode])
        elif mode == "scorer-cluster":   # the same topic, state on the local three-master Redis Cluster
            cluster = local.cluster_up(Path(running.directory), log=lambda line: print(line, file=sys.stderr))
            results[mode] = scorer_mode(running.kafka_bootstrap, cluster.redis_cluster_url, prefix, args.events,
                                        workdir, args.timeout, name=mode, cluster=True)
        elif mode == "latency":
            scorer = results.get("scorer", {})
            scorer_rate = scorer["events"] / scorer["seconds"] if scorer.get("seconds") else 0.0
            rate = args.latency_rate or 0.8 * (scorer_rate or 1000.0)
            results[mode] = latency_mode(running.kafka_bootstrap, running.redis_url, rate, args.latency_seconds,
                                         args.customers, workdir, args.partitions)
        elif mode == "export":
            results[mode] = export_mode(running.redis_url, args.export_customers)
        elif mode == "outbox":
            results[mode] = outbox_mode(running.redis_url, min(args.events, 100_000), args.customers)
        elif mode == "read":
            results[mode] = read_mode(running.kafka_bootstrap, running.redis_url, args.read_customers,
                                      args.read_requests, args.read_rate, workdir, args.partitions,
                                      args.read_events_per_customer, args.read_computed_requests,
                                      args.read_api_processes, args.read_traits)
        else:
            count = min(args.events, args.naive_events) if mode == "naive" else args.events
            results[mode] = faust_mode(mode, running.kafka_bootstrap, running.redis_url, settings.events_topic, count,
                                       workdir, args.timeout)
    for mode, rate in rates(results).items():
        print(f"  {mode}: {rate:,.0f} events/s", file=sys.stderr)
    report["results"] = results
    report["load_average_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{report['started'].replace(':', '')}.json").write_text(json.dumps(report, indent=2))
    args.markdown.write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
