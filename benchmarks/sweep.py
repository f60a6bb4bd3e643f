"""The due sweep's cost on the soak's workload, without Kafka: how long each minute's sweep takes.

    .venv/bin/python -m benchmarks.sweep                         # 3,000 customers, 120 events/s, 20 minutes
    .venv/bin/python -m benchmarks.sweep --customers 10000 --rate 566

Generator traffic over `--minutes` of event time, stamped as if live, goes through the worker's
own `BatchWriter` (batches of 500) into a Redis of the local stack (or `--redis-url`), with
`benchmarks/soak.toml` (1-minute buckets); at every minute boundary of event time the due sweep
runs, as the worker's timer would. It prints the seconds of batches and of each minute's sweep,
and the customers swept: with one-minute buckets nearly every active customer is due every
minute, and a due customer costs a full load of its counters (see benchmarks/SOAK.md). Profile
it with `py-spy record -f raw -o sweep.folded -- .venv/bin/python -m benchmarks.sweep`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.config import load_config  # noqa: E402
from streams.worker.writer import BatchWriter, Incoming  # noqa: E402
from streams.state.store import RedisStore  # noqa: E402
from devstack.traffic import TrafficGenerator, TrafficSettings  # noqa: E402

MINUTE = 60_000


async def run(redis_url: str, customers: int, rate: int, minutes: int) -> dict[str, object]:
    config = load_config(ROOT / "benchmarks" / "soak.toml")
    prefix = f"bench-sweep-{uuid.uuid4().hex[:6]}"
    store = RedisStore.from_url(redis_url, prefix)
    writer = BatchWriter(config, store, outputs=False)
    start = (int(time.time() * 1000) // MINUTE - minutes) * MINUTE
    traffic = TrafficGenerator(TrafficSettings(customers=customers, accounts=max(1, customers // 20), seed=7))
    batch: list[Incoming] = []
    batches_s = 0.0
    sweeps: list[tuple[float, int]] = []
    boundary = start + MINUTE
    try:
        await store.check_layout()
        for message in traffic.messages(rate * 60 * minutes, start, minutes * MINUTE):
            if message.at_ms >= boundary:        # the sweep timer fires between batches
                due = await store.due_count(boundary)
                began = time.perf_counter()
                await writer.sweep(boundary)
                sweeps.append((time.perf_counter() - began, due))
                boundary += MINUTE
            batch.append(Incoming(message.value, message.key, timestamp_ms=message.at_ms))
            if len(batch) == 500:
                began = time.perf_counter()
                await writer.write(batch, message.at_ms)
                batches_s += time.perf_counter() - began
                batch.clear()
    finally:
        keys = [key async for key in store.redis.scan_iter(match=f"{prefix}:*", count=5000)]
        for i in range(0, len(keys), 1000):
            await store.redis.unlink(*keys[i:i + 1000])
        await store.close()
    return {"events": rate * 60 * minutes, "batches_s": batches_s, "sweeps": sweeps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The due sweep's cost; see the module docstring.")
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=120, help="events per second of event time")
    parser.add_argument("--minutes", type=int, default=20)
    parser.add_argument("--redis-url", default=None, help="default: the local stack's Redis (started if needed)")
    args = parser.parse_args(argv)
    redis_url = args.redis_url
    if redis_url is None:
        from devstack import stack as local

        redis_url = local.up(log=print).redis_url
    result = asyncio.run(run(redis_url, args.customers, args.rate, args.minutes))
    print(f"{result['events']:,} events: batches {result['batches_s']:.1f} s "
          f"({result['events'] / result['batches_s']:,.0f} events/s)")
    for minute, (seconds, due) in enumerate(result["sweeps"], start=1):
        print(f"minute {minute:3d}: sweep {seconds:6.2f} s, {due:6,} customers due")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
