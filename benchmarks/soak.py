"""Soak: a worker under steady load for a long time; memory must level off and nothing be lost.

    .venv/bin/python -m benchmarks.soak                      # 30 min at 80 % of the measured max
    .venv/bin/python -m benchmarks.soak --minutes 5 --rate 500

The rate defaults to 80 % of the maximum measured first on this very workload: one worker
fed live-stamped events faster than it consumes, timed over a minute after a paced warm-up
of one retention of soak.toml (16 minutes at --warmup-rate: until then each customer's
counters grow, and so does the cost of a batch; see `calibrate`); the benchmark's scorer
figure is for historical traffic, a different shape. A paced
`engage generate` sends live events (now-stamped) to a fresh worker and key prefix, first for
one retention (the soak's own warm-up, at its own rate, so that the state reaches its steady
size), then for --minutes, while a sampler records, every --sample-s seconds, the worker's RSS,
Redis `used_memory`, the consumer lag and the counters. The bounds cover the minutes after the
warm-up: memory flat, the worker keeping up, and no partition reassigned
(`engagement_partition_assignments_total` unchanged). At the end it waits for the lag to reach
0 and checks that nothing was lost:

* every message written to the topic was consumed (end offsets = messages consumed);
* every consumed event was processed, deduplicated or rejected, and the DLQ holds
  exactly the rejected ones.

Memory is "flat after warm-up" when it grew less than --flat-percent over the second
half of the measured minutes. The soak uses benchmarks/soak.toml, whose short dedup horizon and
lateness make the per-customer event-id memory reach its steady state within minutes;
with the defaults (2 days) Redis keeps growing for 2 days before it levels off, by
design (see README, Reliability). Results: benchmarks/results/soak-<time>.json and
benchmarks/SOAK.md. Not part of the README's test command (the bench tier, `./scripts/test -m bench`,
runs a 15-second version).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import _metric, _start_worker, machine  # noqa: E402
from scoring.config import load_config  # noqa: E402
from devstack import stack as local  # noqa: E402

CONFIG = ROOT / "benchmarks" / "soak.toml"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def redis_used_mb(url: str) -> float:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"]) / 2**20
    finally:
        client.close()


def topic_messages(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()


def counters(port: int) -> dict[str, float]:
    """The worker's counters and lag from one scrape of /metrics; rejections summed over reasons."""
    import urllib.request

    names = ("engagement_messages_consumed_total", "engagement_events_consumed_total",
             "engagement_events_processed_total", "engagement_events_deduplicated_total", "engagement_consumer_lag",
             "engagement_partition_assignments_total")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
    except OSError:
        return {}
    values: dict[str, float] = {"rejected": 0.0}
    for line in lines:
        name, _, value = line.rpartition(" ")
        if name in names:
            values[name] = float(value)
        elif name.startswith("engagement_events_rejected_total{"):
            values["rejected"] += float(value)
    return values


def growth_percent(samples: list[dict[str, float]], key: str, since: float = 0.0) -> float:
    """Growth of `key` over the second half of the run after `since` (the warm-up), in % of its
    value at the half-way mark."""
    half = [s for s in samples if s["t"] >= (since + samples[-1]["t"]) / 2]
    if len(half) < 2 or not half[0][key]:
        return 0.0
    return (half[-1][key] - half[0][key]) / half[0][key] * 100


class _Run:
    """One soak or calibration run: its own topics, key prefix, worker and generator command."""

    def __init__(self, running: local.Stack, kind: str) -> None:
        self.running = running
        self.id = f"{kind}{uuid.uuid4().hex[:8]}"
        self.prefix = f"{self.id}."
        self.workdir = ROOT / ".engage" / "soak" / self.id
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": running.kafka_bootstrap,
                    "ENGAGE_REDIS_URL": running.redis_url, "ENGAGE_CONFIG": str(CONFIG), "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "streams.cli", "topics", "--topic-prefix", self.prefix], env=self.env,
                       check=True, capture_output=True, cwd=ROOT)

    def generate(self, count: int, customers: int, *pacing: str) -> list[str]:
        return [sys.executable, "-m", "devstack.cli", "generate", "--topic-prefix", self.prefix, "--count", str(count),
                "--customers", str(customers), "--accounts", str(max(1, customers // 20)), "--id-prefix", self.id,
                "--quiet", *pacing]

    def start_worker(self) -> tuple[subprocess.Popen, int]:
        before = os.environ.get("ENGAGE_CONFIG")
        os.environ["ENGAGE_CONFIG"] = str(CONFIG)   # the worker reads it through the environment
        try:
            worker, port = _start_worker(self.running.kafka_bootstrap, self.running.redis_url, self.prefix, self.id,
                                         self.workdir / "worker")
        finally:
            if before is None:
                os.environ.pop("ENGAGE_CONFIG")
            else:
                os.environ["ENGAGE_CONFIG"] = before
        deadline = time.monotonic() + 120
        while _metric(port, "engagement_assigned_partitions") != 4:
            if time.monotonic() > deadline or worker.poll() is not None:
                worker.kill()
                raise RuntimeError(f"worker did not start; see {self.workdir / 'worker.log'}")
            time.sleep(0.5)
        return worker, port


def _stop(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def calibrate(running: local.Stack, customers: int, warmup_s: float = 150.0, measure_s: float = 60.0,
              share: float = 0.8, warmup_rate: float = 500.0, log=print) -> float:  # type: ignore[no-untyped-def]
    """`share` of what one worker sustains on this very workload, once its state is steady.

    A paced generator sends live-stamped events at `warmup_rate` (one the worker keeps up
    with) for `warmup_s`, so that the state holds a full retention *in event time* (each
    customer's buckets, sessions and dedup ids at their steady size); then a second one sends
    as fast as it can, and the rate is what the worker consumed over the following
    `measure_s` (a lower bound when it kept up with the generator: five times `warmup_rate`).

    Why paced: a worker fed flat out from the start falls behind at once, and by the end of
    any warm-up it is consuming events stamped minutes earlier, with a state that spans only
    the few minutes of event time it has caught up on: it measured 1.5-1.8x what the same
    worker sustained later in the soak (SOAK.md). A warm-up the worker cannot keep up with
    is refused, naming the flag.
    """
    run = _Run(running, "cal")
    worker, port = run.start_worker()
    # more than the worker consumes, without one generator process taking a core from it
    flat_out = 5 * warmup_rate
    logs = run.workdir / "generator.log"
    with logs.open("wb") as output:
        # asked for more than the span, so each is still sending when its phase ends (killed below)
        paced = subprocess.Popen(run.generate(int(warmup_rate * warmup_s * 2), customers, "--rate", str(warmup_rate)),
                                 env=run.env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        generators = [paced]
        try:
            deadline = time.monotonic() + warmup_s
            while True:       # a generator that exits (a refused flag) fails the run at once, not after the warm-up
                if paced.poll() is not None:
                    raise RuntimeError(f"calibration: the warm-up generator stopped early (exit {paced.returncode}); "
                                       f"see {logs}")
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            lag = _metric(port, "engagement_consumer_lag") or 0
            if lag > warmup_rate * 15:
                raise RuntimeError(f"calibration: the worker did not keep up with the warm-up ({lag:,.0f} messages "
                                   f"behind at {warmup_rate:,.0f} events/s); lower --warmup-rate")
            paced.kill()
            flat = subprocess.Popen(run.generate(int(flat_out * measure_s * 3), customers, "--rate", str(flat_out)),
                                    env=run.env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
            generators.append(flat)
            time.sleep(5)                     # the backlog builds: from here the worker consumes flat out
            before = _metric(port, "engagement_events_consumed_total") or 0
            began = time.monotonic()
            time.sleep(measure_s)
            after = _metric(port, "engagement_events_consumed_total") or 0
            lag = _metric(port, "engagement_consumer_lag") or 0
            if flat.poll() is not None:
                raise RuntimeError(f"calibration: the generator stopped early (exit {flat.returncode}); see {logs}")
            rate = (after - before) / (time.monotonic() - began)
            # No lag means the worker kept up with one generator process: what it sustains is at
            # least this (a fast machine with few customers); soaking at a share of it is still honest.
            bound = "sustains" if lag > 0 else "keeps up with the generator's"
            log(f"calibration: one warm worker {bound} {rate:,.0f} events/s on this workload (lag {lag:,.0f}) "
                f"after {warmup_s / 60:.0f} minutes at {warmup_rate:,.0f} events/s; soaking at {share:.0%}")
            return round(rate * share, 1)
        finally:
            for generator in generators:
                generator.kill()
            _stop(worker)


def soak(minutes: float, rate: float, customers: int, sample_s: float, flat_percent: float,
         running: local.Stack, log=print, drain_s: float = 3600.0,
         kept_up_s: float = 10.0, warmup_s: float = 0.0) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """`warmup_s` of the same stream at the same rate first, until the state holds a full retention:
    the samples cover it too, the bounds only the `minutes` after it."""
    run = _Run(running, "soak")
    run_id, prefix, env = run.id, run.prefix, run.env
    worker, port = run.start_worker()
    count = int(rate * (warmup_s + minutes * 60))
    samples: list[dict[str, float]] = []
    generator = None
    try:
        log(f"soak {run_id}: {count:,} events at {rate:,.0f}/s for {warmup_s / 60:g} min of warm-up and {minutes:g} "
            f"min, {customers:,} customers")
        generator = subprocess.Popen(run.generate(count, customers, "--rate", str(rate)), env=env, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        began = time.monotonic()
        while generator.poll() is None:
            time.sleep(sample_s)
            sample = {"t": round(time.monotonic() - began, 1), "worker_rss_mb": round(rss_mb(worker.pid), 1),
                      "redis_used_mb": round(redis_used_mb(running.redis_url), 1), **counters(port)}
            samples.append(sample)
            log(f"  {sample['t']:7.0f} s  rss {sample['worker_rss_mb']:7.1f} MB  redis {sample['redis_used_mb']:7.1f} MB"
                f"  consumed {sample.get('engagement_events_consumed_total', 0):>11,.0f}"
                f"  lag {sample.get('engagement_consumer_lag', 0):>8,.0f}")
        if generator.returncode != 0:
            raise RuntimeError(f"generator failed: {generator.stdout.read().decode()[-2000:]}")  # type: ignore[union-attr]
        written = topic_messages(running.kafka_bootstrap, f"{prefix}engagement.events")
        deadline = time.monotonic() + drain_s
        while counters(port).get("engagement_messages_consumed_total", -1) < written:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        drained_after_s = round(time.monotonic() - began - samples[-1]["t"], 1) if samples else 0.0
        final = counters(port)
        dlq = topic_messages(running.kafka_bootstrap, f"{prefix}engagement.events.dlq")
        events = final.get("engagement_events_consumed_total", 0)
        accounted = (final.get("engagement_events_processed_total", 0) + final.get("engagement_events_deduplicated_total", 0)
                     + final.get("rejected", 0))
        loss = {"messages_written": written, "messages_consumed": int(final.get("engagement_messages_consumed_total", 0)),
                "events_consumed": int(events), "events_accounted": int(accounted),
                "rejected": int(final.get("rejected", 0)), "dlq_messages": dlq}
        drained = loss["messages_consumed"] == written
        zero_loss = drained and accounted == events and dlq == loss["rejected"]
        growth = {key: round(growth_percent(samples, key, warmup_s), 2) for key in ("worker_rss_mb", "redis_used_mb")}
        # throughput is flat when the worker kept up all through the second half: never more
        # than `kept_up_s` seconds of traffic waiting
        second_half = [s_ for s_ in samples if s_["t"] >= (warmup_s + samples[-1]["t"]) / 2] if samples else []
        peak_lag = max((s_.get("engagement_consumer_lag", 0) for s_ in second_half), default=0)
        # a rebalance with no worker joining or leaving (a missed heartbeat, a session expiring)
        measured = [s_ for s_ in samples if s_["t"] >= warmup_s]
        assignments = [s_.get("engagement_partition_assignments_total", 0) for s_ in measured]
        return {"run": run_id, "machine": machine(), "minutes": minutes, "warmup_s": warmup_s, "rate": rate,
                "customers": customers, "config": str(CONFIG.relative_to(ROOT)), "samples": samples,
                "drained_after_s": drained_after_s, "loss": loss, "drained": drained, "zero_loss": zero_loss,
                "second_half_growth_percent": growth, "flat": all(abs(g) < flat_percent for g in growth.values()),
                "flat_percent": flat_percent, "second_half_peak_lag": peak_lag, "kept_up_s": kept_up_s,
                "kept_up": peak_lag <= rate * kept_up_s,
                "partition_assignments": [min(assignments, default=0), max(assignments, default=0)],
                "no_reassignment": bool(assignments) and min(assignments) == max(assignments)}
    finally:
        if generator and generator.poll() is None:
            generator.kill()
        _stop(worker)


def markdown(report: dict[str, object]) -> str:
    samples = report["samples"]  # type: ignore[assignment]
    step = max(1, len(samples) // 12)  # type: ignore[arg-type]
    rows = [f"| {s['t']:,.0f} | {s['worker_rss_mb']:,.1f} | {s['redis_used_mb']:,.1f} | "
            f"{s.get('engagement_events_consumed_total', 0):,.0f} | {s.get('engagement_consumer_lag', 0):,.0f} |"
            for s in [*samples[:-1:step], samples[-1]]]  # type: ignore[index]
    loss = report["loss"]  # type: ignore[assignment]
    m = report["machine"]  # type: ignore[assignment]
    return "\n".join([
        "# Soak result", "",
        f"Run `{report['run']}` on commit `{m['commit']}`, {m['cpus']} cores ({m['cpu']}): {report['minutes']:g} min "  # type: ignore[index]
        f"at {report['rate']:,.0f} events/s ({report.get('rate_from', 'given')}), {report['customers']:,} customers, "
        f"config `{report['config']}`.", "",
        "| seconds | worker RSS MB | Redis used MB | events consumed | lag |", "|---|---|---|---|---|", *rows, "",
        f"- Growth over the second half: worker RSS {report['second_half_growth_percent']['worker_rss_mb']:+.2f} %, "  # type: ignore[index]
        f"Redis {report['second_half_growth_percent']['redis_used_mb']:+.2f} % "  # type: ignore[index]
        f"({'flat' if report['flat'] else 'NOT flat'} at ±{report['flat_percent']:g} %).",
        *([f"- Warm-up: the first {report['warmup_s'] / 60:g} minutes of the same stream at the same rate (one "
           f"retention: the state reaches its steady size); the bounds cover the {report['minutes']:g} minutes "
           f"after it."] if report.get("warmup_s") else []),
        *([f"- Partition assignments over the measured minutes: {report['partition_assignments'][0]:g} → "  # type: ignore[index]
           f"{report['partition_assignments'][1]:g} ("  # type: ignore[index]
           f"{'no reassignment' if report['no_reassignment'] else 'REASSIGNED: a false rebalance'})."]
          if "no_reassignment" in report else []),
        *([f"- Throughput over the second half: at most {report['second_half_peak_lag']:,.0f} messages waiting "
           f"({'flat: the worker kept up, never more' if report['kept_up'] else 'NOT flat: more'} than "
           f"{report['kept_up_s']:g} s of traffic)."] if "kept_up" in report else []),
        f"- Loss: {loss['messages_written']:,} messages written, {loss['messages_consumed']:,} consumed; "  # type: ignore[index]
        f"{loss['events_consumed']:,} events consumed, {loss['events_accounted']:,} processed + deduplicated + "  # type: ignore[index]
        f"rejected; {loss['rejected']:,} rejected, {loss['dlq_messages']:,} in the DLQ: "  # type: ignore[index]
        f"{'zero loss' if report['zero_loss'] else ('LOSS' if report.get('drained', True) else 'undecided')}.",
        (f"- The backlog drained {report['drained_after_s']:g} s after the generator stopped." if report.get("drained", True)
         else f"- NOT drained {report['drained_after_s']:g} s after the generator stopped: "
              f"{loss['messages_written'] - loss['messages_consumed']:,} messages still waiting, so loss is undecided."),
        ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Soak the worker; see the module docstring.")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=None,
                        help="events/s (default: 80 %% of the max measured on this workload first)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--sample-s", type=float, default=30.0)
    parser.add_argument("--flat-percent", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=None,
                        help="calibration warm-up (default: soak.toml's retention plus a minute)")
    parser.add_argument("--warmup-rate", type=float, default=500.0,
                        help="events/s of the calibration's paced warm-up (one the worker keeps up with)")
    parser.add_argument("--no-soak-warmup", dest="soak_warmup", action="store_false",
                        help="start measuring at once instead of after one retention at the soak's own rate")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    directory = ROOT / ".engage" / "soak" / "stack"   # its own Kafka and Redis: Redis memory is this run's alone
    running = local.up(directory, log=print)
    try:
        warmup_s = args.warmup_s or load_config(CONFIG).retention_ms / 1000 + 60
        rate = args.rate or calibrate(running, args.customers, warmup_s=warmup_s, warmup_rate=args.warmup_rate)
        report = soak(args.minutes, rate, args.customers, args.sample_s, args.flat_percent, running,
                      warmup_s=warmup_s if args.soak_warmup else 0.0)
        report["rate_from"] = "--rate" if args.rate else (
            f"80 % of {rate / 0.8:,.0f} events/s, one worker's max here after a {warmup_s / 60:.0f}-minute warm-up "
            f"at {args.warmup_rate:,.0f} events/s")
    finally:
        local.down(directory, purge=True, log=print)
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"soak-{stamp}.json").write_text(json.dumps(report, indent=2))
    summary = markdown(report)
    if args.out == ROOT / "benchmarks" / "results":
        (ROOT / "benchmarks" / "SOAK.md").write_text(summary)
    print(summary)
    return 0 if report["zero_loss"] else 1


if __name__ == "__main__":
    sys.exit(main())
