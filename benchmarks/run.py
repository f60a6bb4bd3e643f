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
import json
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

from scoring.synthetic import TrafficGenerator, TrafficSettings  # noqa: E402
from scoring.timeutil import DAY  # noqa: E402
from streams import stack as local  # noqa: E402
from streams.clock import now_ms  # noqa: E402
from streams.settings import load_settings, prefixed_topics  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402

MODES = ("raw", "noop", "noop-default", "noop-fast", "noop-batch", "scorer", "naive", "raw-batched", "scorer-batched", "scale-out", "latency")
BATCH = 100   # events per batch message in the batched topic (JSON arrays, grouped per partition)


def prefill(bootstrap: str, topic: str, events: int, customers: int, batch: int = 1) -> dict[str, float]:
    """The generator's traffic into `topic`: one event per message, or JSON arrays of `batch` events."""
    from scoring.synthetic import batched
    from streams.producer import partition_of

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
                timeout_s: float, workers: int = 1, name: str = "scorer") -> dict[str, float]:
    """`engage worker` processes end to end (consumed, validated, applied to Redis, KPIs current).

    With several workers they share the topic's partitions (one consumer group, one key prefix).
    """
    app_id = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    procs = [_start_worker(bootstrap, redis_url, prefix, app_id, workdir / f"{name}-{i}") for i in range(workers)]
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
                return {"events": int(consumed), "seconds": elapsed, "workers": workers,
                        "worker_peak_rss_mb": max(rss), **asyncio.run(_redis_memory(redis_url, app_id))}
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not finish in time")
    finally:
        for worker, _ in procs:
            worker.terminate()
        for worker, _ in procs:
            worker.wait(timeout=60)


def _start_worker(bootstrap: str, redis_url: str, prefix: str, app_id: str, base: Path) -> tuple[subprocess.Popen, int]:
    port = local.free_port()
    env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": bootstrap, "ENGAGE_REDIS_URL": redis_url,
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


async def dormant_member_bytes(redis_url: str, members: int = 20_000) -> dict[str, float]:
    """Redis bytes per dormant member: joined long ago, nothing in the window (history evicted).

    Built by the core (a join, then a sweep a retention period later), stored with the
    worker's own encoding, key and index, and measured as the `used_memory` delta.
    """
    import redis.asyncio as aioredis

    from scoring.config import load_config
    from scoring.engine import Scorer
    from streams.codec import CustomerRecord, encode_record
    from streams.store import Keys

    config = load_config()
    keys = Keys(f"bench-dormant-{uuid.uuid4().hex[:6]}")
    joined = now_ms() - 400 * DAY
    client = aioredis.Redis.from_url(redis_url)
    try:
        before = (await client.info("memory"))["used_memory"]
        for start in range(0, members, 1000):
            scorer = Scorer(config, evaluate_alerts=False)
            ids = [f"m{start + i:09d}" for i in range(min(1000, members - start))]
            for cid in ids:
                scorer.process(orjson.dumps({"event_id": f"j-{cid}", "customer_id": cid, "type": "member_joined",
                                             "ts": joined, "account_id": "a1"}), joined)
            scorer.sweep(now_ms())
            async with client.pipeline(transaction=False) as pipe:
                for cid in ids:
                    pipe.set(keys.customer(cid), encode_record(CustomerRecord(scorer.customers[cid], {}, None)))
                pipe.sadd(keys.customers, *ids)
                pipe.sadd(keys.account("a1"), *ids)
                await pipe.execute()
        after = (await client.info("memory"))["used_memory"]
        sample = await client.memory_usage(keys.customer("m000000000"), samples=0) or 0
        return {"dormant_members": members, "redis_bytes_per_dormant_member": (after - before) / members,
                "dormant_record_memory_usage": sample}
    finally:
        await client.aclose()


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


async def _redis_memory(redis_url: str, prefix: str) -> dict[str, float]:
    """Bytes per customer record, by MEMORY USAGE over a sample of customers."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        ids = [m.decode() async for m in client.sscan_iter(f"{prefix}:{{g}}:customers", count=1000)]
        sample = ids[:: max(1, len(ids) // 500)]
        sizes = [await client.memory_usage(f"{prefix}:{{{cid}}}:c", samples=0) or 0 for cid in sample]
        return {"customers": len(ids), "redis_bytes_per_customer": sum(sizes) / max(len(sizes), 1)}
    finally:
        await client.aclose()


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kafka": local.KAFKA_VERSION, "commit": commit.stdout.strip() or "unknown"}


def markdown(report: dict[str, object]) -> str:
    results: dict[str, dict[str, float]] = report["results"]  # type: ignore[assignment]
    rate = {m: r["events"] / r["seconds"] for m, r in results.items() if r.get("seconds") and m != "latency"}
    m = report["machine"]
    lines = [
        "# Benchmark results", "",
        f"Run {report['started']} on {m['cpus']} × {m['cpu']}, Python {m['python']}, Kafka {m['kafka']}, "
        f"commit `{m['commit']}`. Topic: {report['events']:,} events, {report['customers']:,} customers, "
        f"{report['partitions']} partitions, {report['prefill']['mean_bytes']:.0f} bytes per message on average"
        + (f"; the batched topic holds the same events in JSON arrays of {BATCH} "
           f"({report['prefill_batched']['messages']:,} messages)" if "prefill_batched" in report else "") + ".",
        "Command: `" + report["command"] + "`. Kafka, Redis, the producer and the workers share the 2 cores.", "",
        "| mode | events | seconds | events/s | × raw ceiling | × framework ceiling | × naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        if mode not in rate:
            continue
        r = results[mode]
        ratio = lambda base: f"{rate[mode] / rate[base]:.2f}" if base in rate else "–"  # noqa: E731
        lines.append(f"| {mode} | {r['events']:,} | {r['seconds']:.2f} | {rate[mode]:,.0f} | {ratio('raw')} | "
                     f"{ratio('noop')} | {ratio('naive')} |")
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for target, value, met in targets(results, rate):
        lines.append(f"| {target} | {value} | {met} |")
    scorer = results.get("scorer", {})
    if scorer:
        lines += ["", f"Scorer memory: {scorer.get('redis_bytes_per_customer', 0):,.0f} Redis bytes per customer "
                      f"record ({scorer.get('customers', 0):,} customers), worker peak RSS "
                      f"{scorer.get('worker_peak_rss_mb') or 0:,.0f} MB."]
    lines += ["", "Modes: `raw` aiokafka + orjson only; `noop` a no-op Faust agent with our worker's settings "
                  "(framework ceiling); `noop-default` the same agent iterating per event with Faust's defaults; "
                  "`noop-fast` / `noop-batch` the no-op agent on the benchmark transport (benchmarks/fast_transport.py), "
                  "per event / one event per fetched chunk; "
                  "`scorer` one `engage worker` end to end; `naive` per-event agent with one Redis round trip "
                  "per read and write; `raw-batched` / `scorer-batched` the same on the batched topic; "
                  "`scale-out` two workers sharing the topic; `latency` a paced producer at 80 % of the "
                  "scorer's rate (p50/p95/p99 of event time -> applied in Redis, from the worker's histogram).", "",
              "What stands in the way of the targets that are not met, with the profiles: `benchmarks/PROFILE.md`.", ""]
    return "\n".join(lines)


def targets(results: dict[str, dict[str, float]], rate: dict[str, float]) -> list[tuple[str, str, str]]:
    """The issue's targets against this run's numbers (ratios within the run)."""
    out = []

    def add(name: str, value: float | None, fmt: str, ok: bool | None) -> None:
        out.append((name, "–" if value is None else fmt.format(value), "–" if ok is None else ("yes" if ok else "no")))

    ratio = lambda a, b: rate[a] / rate[b] if a in rate and b in rate else None  # noqa: E731
    r = ratio("scorer", "noop")
    add("scorer ≥ 0.8 × framework ceiling", r, "{:.2f}×", None if r is None else r >= 0.8)
    r = ratio("noop", "noop-default")
    add("framework ceiling ≥ 3 × Faust defaults", r, "{:.2f}×", None if r is None else r >= 3)
    r = ratio("noop-fast", "noop-default")
    add("(benchmark transport, per event) ≥ 3 × Faust defaults", r, "{:.2f}×", None if r is None else r >= 3)
    r = ratio("noop-batch", "noop-default")
    add("(benchmark transport, batch delivery) ≥ 3 × Faust defaults", r, "{:.2f}×", None if r is None else r >= 3)
    b, rb = rate.get("scorer-batched"), ratio("scorer-batched", "raw-batched")
    add("batched: scorer ≥ 100,000 events/s", b, "{:,.0f}/s", None if b is None else b >= 100_000)
    add("batched: or scorer ≥ 0.5 × raw ceiling (batched)", rb, "{:.3f}×", None if rb is None else rb >= 0.5)
    lat = results.get("latency", {})
    p99 = lat.get("p99_ms")
    add("p99 ≤ 100 ms at 80 % load", p99, "{:.0f} ms", None if p99 is None else p99 <= 100)
    if lat:
        out.append(("(latency p50 / p95)", f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} ms at "
                    f"{lat['achieved_rate']:,.0f} events/s", "–"))
    active = results.get("scorer", {}).get("redis_bytes_per_customer")
    add("≤ 1 KB Redis per active customer", active, "{:,.0f} B", None if active is None else active <= 1024)
    dormant = results.get("scorer", {}).get("redis_bytes_per_dormant_member")
    add("≤ 64 B Redis per dormant member", dormant, "{:,.0f} B", None if dormant is None else dormant <= 64)
    r = ratio("scale-out", "scorer")
    add("scale-out: 2 workers / 1 worker (same 2 cores)", r, "{:.2f}×", None)
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
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (choose from {', '.join(MODES)})")

    running = local.up(log=lambda line: print(line, file=sys.stderr))
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = load_settings({"kafka_bootstrap": running.kafka_bootstrap, "redis_url": running.redis_url,
                              "partitions": args.partitions, **prefixed_topics(prefix)})
    ensure_topics(settings)
    workdir = Path(running.directory).parent / "bench" / prefix.rstrip(".")
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "events": args.events,
        "customers": args.customers, "partitions": args.partitions, "machine": machine(),
        "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"pre-filling {settings.events_topic} with {args.events:,} events ...", file=sys.stderr)
    report["prefill"] = prefill(running.kafka_bootstrap, settings.events_topic, args.events, args.customers)
    batched_prefix = f"{prefix}batched."
    batched = dataclasses.replace(settings, **prefixed_topics(batched_prefix))
    if {"raw-batched", "scorer-batched"} & set(modes):
        ensure_topics(batched)
        print(f"pre-filling {batched.events_topic} with the same events in arrays of {BATCH} ...", file=sys.stderr)
        report["prefill_batched"] = prefill(running.kafka_bootstrap, batched.events_topic, args.events,
                                            args.customers, batch=BATCH)
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        print(f"measuring {mode} ...", file=sys.stderr)
        if mode in ("raw", "raw-batched"):
            topic = settings.events_topic if mode == "raw" else batched.events_topic
            results[mode] = asyncio.run(raw_ceiling(running.kafka_bootstrap, topic, args.events))
        elif mode in ("scorer", "scorer-batched", "scale-out"):
            results[mode] = scorer_mode(running.kafka_bootstrap, running.redis_url,
                                        batched_prefix if mode == "scorer-batched" else prefix, args.events, workdir,
                                        args.timeout, workers=2 if mode == "scale-out" else 1, name=mode)
            if mode == "scorer":
                results[mode].update(asyncio.run(dormant_member_bytes(running.redis_url, args.dormant)))
        elif mode == "latency":
            scorer = results.get("scorer", {})
            scorer_rate = scorer["events"] / scorer["seconds"] if scorer.get("seconds") else 0.0
            rate = args.latency_rate or 0.8 * (scorer_rate or 1000.0)
            results[mode] = latency_mode(running.kafka_bootstrap, running.redis_url, rate, args.latency_seconds,
                                         args.customers, workdir, args.partitions)
        else:
            count = min(args.events, args.naive_events) if mode == "naive" else args.events
            results[mode] = faust_mode(mode, running.kafka_bootstrap, running.redis_url, settings.events_topic, count,
                                       workdir, args.timeout)
        r = results[mode]
        print(f"  {mode}: {r['events']:,} events in {r['seconds']:.2f} s = {r['events'] / r['seconds']:,.0f}/s",
              file=sys.stderr)
    report["results"] = results
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{report['started'].replace(':', '')}.json").write_text(json.dumps(report, indent=2))
    args.markdown.write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
