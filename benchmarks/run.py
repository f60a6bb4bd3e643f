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

MODES = ("raw", "noop", "noop-default", "scorer", "naive")


def prefill(bootstrap: str, topic: str, events: int, customers: int) -> dict[str, float]:
    traffic = TrafficGenerator(TrafficSettings(customers=customers, accounts=max(1, customers // 20), seed=42))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=20, batch_size=512 * 1024)
    began = time.perf_counter()
    size = 0
    start = now_ms()
    for message in traffic.messages(events, start - 25 * DAY, 25 * DAY):
        producer.send(topic, key=message.key or None, value=message.value)
        size += len(message.value)
    producer.flush()
    producer.close()
    elapsed = time.perf_counter() - began
    return {"events": events, "seconds": elapsed, "mean_bytes": size / events}


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
                    _decode(record.value)
                seen += len(records)
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
                timeout_s: float) -> dict[str, float]:
    """One `engage worker` end to end: consumed, validated, applied to Redis, KPIs current."""
    port = local.free_port()
    app_id = f"bench-scorer-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": bootstrap, "ENGAGE_REDIS_URL": redis_url,
           "ENGAGE_DATA_DIR": str(workdir / "faust-scorer"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "streams.cli", "worker", "--topic-prefix", prefix, "--app-id", app_id,
               "--key-prefix", app_id, "--web-port", str(port), "--loglevel", "warning"]
    with open(workdir / "scorer.log", "wb") as log:
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    first = 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {workdir / 'scorer.log'}")
            consumed = _metric(port, "engagement_events_consumed_total")
            if consumed and not first:
                first = time.perf_counter()
            if consumed is not None and consumed >= events:
                elapsed = time.perf_counter() - first
                rss = _rss_mb(worker.pid)
                return {"events": int(consumed), "seconds": elapsed, "worker_peak_rss_mb": rss,
                        **asyncio.run(_redis_memory(redis_url, app_id))}
            time.sleep(0.2)
        raise RuntimeError("the scorer did not finish in time")
    finally:
        worker.terminate()
        worker.wait(timeout=60)


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
    rate = {m: r["events"] / r["seconds"] for m, r in results.items() if r.get("seconds")}
    m = report["machine"]
    lines = [
        "# Benchmark results", "",
        f"Run {report['started']} on {m['cpus']} × {m['cpu']}, Python {m['python']}, Kafka {m['kafka']}, "
        f"commit `{m['commit']}`. Topic: {report['events']:,} events, {report['customers']:,} customers, "
        f"{report['partitions']} partitions, {report['prefill']['mean_bytes']:.0f} bytes per message on average.",
        "Command: `" + report["command"] + "`.", "",
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
    scorer = results.get("scorer", {})
    if scorer:
        lines += ["", f"Scorer memory: {scorer.get('redis_bytes_per_customer', 0):,.0f} Redis bytes per customer "
                      f"record ({scorer.get('customers', 0):,} customers), worker peak RSS "
                      f"{scorer.get('worker_peak_rss_mb') or 0:,.0f} MB."]
    lines += ["", "Modes: `raw` aiokafka + orjson only; `noop` a no-op Faust agent with our worker's settings "
                  "(framework ceiling); `noop-default` the same agent iterating per event with Faust's defaults; "
                  "`scorer` one `engage worker` end to end; `naive` per-event agent with one Redis round trip "
                  "per read and write.", ""]
    return "\n".join(lines)


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
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        print(f"measuring {mode} ...", file=sys.stderr)
        if mode == "raw":
            results[mode] = asyncio.run(raw_ceiling(running.kafka_bootstrap, settings.events_topic, args.events))
        elif mode == "scorer":
            results[mode] = scorer_mode(running.kafka_bootstrap, running.redis_url, prefix, args.events, workdir,
                                        args.timeout)
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
