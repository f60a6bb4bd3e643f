"""Faust apps the benchmark runs as subprocesses on the pre-filled topic.

    python -m benchmarks.agents noop|noop-default|naive

* `noop`: a no-op agent with our worker's settings (take_events batches, concurrency 1),
  reading and decoding every message: the framework ceiling.
* `noop-default`: the same agent with Faust's default consumption settings and per-event
  iteration: what a first Faust app gets.
* `noop-fast`: `noop` on the benchmark transport that removes Faust's per-message task
  overhead (benchmarks.fast_transport), lean monitor, raw schema, a 64 k stream buffer.
* `noop-chunked`: the no-op agent on the worker's consumption path (streams/worker/kafka_transport.py,
  as `ENGAGE_CONSUMPTION=chunked` sets it up): one Faust event per fetched chunk.
* `naive`: the straightforward per-event scorer a user would write first: validate with
  the core, then one Redis read-modify-write round trip per event on one JSON document
  per customer (its own encoding below, not the worker's layout), no alert rules.

Each writes {"mode", "events", "seconds"} to $BENCH_RESULT once it has seen the expected
count (timed from the first message) and exits.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson

from scoring.state import CustomerState, SessionStats


def _decode(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def encode_state(state: CustomerState) -> bytes:
    """The naive baseline's own record: a customer's whole core state as one JSON document."""
    return orjson.dumps({
        "w": state.watermark_ms, "b": state.buckets, "la": state.last_active_ms, "lr": state.last_aer_ms,
        "f": state.features, "m": state.membership, "a": state.account, "g": state.segment, "sn": state.seen,
        "ss": {sid: (s.anchor_ms, s.pages, s.actions, s.ended, s.last_ms) for sid, s in state.sessions.items()},
    }, option=orjson.OPT_NON_STR_KEYS)


def decode_state(customer_id: str, raw: bytes) -> CustomerState:
    doc = orjson.loads(raw)
    return CustomerState(
        customer_id=customer_id, watermark_ms=doc["w"], buckets={int(b): c for b, c in doc["b"].items()},
        last_active_ms=doc["la"], last_aer_ms=doc["lr"], features=doc["f"], membership=[tuple(m) for m in doc["m"]],
        sessions={sid: SessionStats(*s) for sid, s in doc["ss"].items()},
        account=tuple(doc["a"]) if doc["a"] else None, segment=tuple(doc["g"]) if doc["g"] else None, seen=doc["sn"],
    )


def main() -> None:
    mode = sys.argv[1]
    topic_name = os.environ["BENCH_TOPIC"]
    expected = int(os.environ["BENCH_EVENTS"])
    bootstrap = os.environ["ENGAGE_KAFKA_BOOTSTRAP"]
    app_id = f"bench-{mode}-{os.getpid()}"
    common = dict(broker=f"kafka://{bootstrap}", store="memory://", key_serializer="raw", value_serializer="raw",
                  web_enabled=False, consumer_auto_offset_reset="earliest", autodiscover=False,
                  datadir=os.environ.get("BENCH_DATADIR", "/tmp/bench-faust"))
    if mode == "noop-fast":
        from benchmarks import fast_transport

        fast_transport.register()
        common.update(broker=f"fastkafka://{bootstrap}", stream_buffer_maxsize=65536,
                      Monitor=fast_transport.LeanMonitor, Schema=fast_transport.RawSchema)
    if mode == "noop-chunked":   # exactly the worker's app settings for its consumption path
        from streams.worker.app import consumption_settings
        from streams.settings import load_settings

        common.update(consumption_settings(load_settings({"kafka_bootstrap": bootstrap, "redis_url": "redis://-"})))
    app = faust.App(app_id, **common)
    if mode == "noop-chunked":
        from streams.worker.kafka_transport import ChunkSchema

        topic = app.topic(topic_name, schema=ChunkSchema())
    else:
        topic = app.topic(topic_name, key_type=bytes, value_type=bytes)
    state = {"seen": 0, "first": 0.0}

    def count(n: int) -> None:
        if not state["first"]:
            state["first"] = time.perf_counter()
        state["seen"] += n
        if state["seen"] >= expected:
            elapsed = time.perf_counter() - state["first"]
            # Faust's worker redirects stdout into its logger: the result goes to a file
            with open(os.environ["BENCH_RESULT"], "wb") as out:
                out.write(orjson.dumps({"mode": mode, "events": state["seen"], "seconds": elapsed}))
            os._exit(0)

    if mode == "noop-chunked":
        @app.agent(topic, concurrency=1)
        async def noop_chunked(stream: faust.StreamT) -> None:
            async for event in stream.events():   # each event: a chunk of one partition's records
                for record in event.value:
                    _decode(record.value)
                count(len(event.value))
    elif mode in ("noop", "noop-fast"):
        @app.agent(topic, concurrency=1)
        async def noop(stream: faust.StreamT) -> None:
            async for batch in stream.take_events(1000, within=0.1):
                for event in batch:
                    _decode(event.message.value)
                count(len(batch))
    elif mode == "noop-default":
        @app.agent(topic)
        async def noop_default(stream: faust.StreamT) -> None:
            async for value in stream:
                _decode(value)
                count(1)
    elif mode == "naive":
        import redis.asyncio as aioredis

        from scoring.config import load_config
        from scoring.contributions import contribution
        from scoring.engine import gate, Outcome
        from scoring.events import decode_event
        from scoring.reasons import EventRejected
        from scoring.state import CustomerState

        config = load_config()
        client = aioredis.Redis.from_url(os.environ["ENGAGE_REDIS_URL"])
        prefix = os.environ.get("BENCH_PREFIX", "naive")

        @app.agent(topic, concurrency=1)
        async def naive(stream: faust.StreamT) -> None:
            async for value in stream:
                now = time.time_ns() // 1_000_000
                try:
                    event = decode_event(value, config)
                    key = f"{prefix}:{{{event.customer_id}}}:c"
                    raw = await client.get(key)          # one round trip to read ...
                    state = decode_state(event.customer_id, raw) if raw else CustomerState(event.customer_id)
                    if gate(event, state, now, config) is Outcome.ACCEPTED:
                        state.apply(event, contribution(event, config), now, config)
                        await client.set(key, encode_state(state))  # ... and one to write, per event
                except EventRejected:
                    pass
                count(1)
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    from faust.worker import Worker

    worker = Worker(app, loglevel="warning", quiet=True)
    if mode != "noop-default":   # our worker's setting: no spinner (it turns the root logger to DEBUG)
        worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
