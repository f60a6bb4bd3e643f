"""`./engage generate`: synthetic traffic into the events topic with kafka-python."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from scoring.config import load_config
from scoring.timeutil import DAY
from devstack.traffic import TrafficGenerator, TrafficSettings, as_segment, batched
from streams.clock import now_ms
from streams.security import kafka_options
from streams.settings import Settings


@dataclass
class GenerateOptions:
    count: int
    rate: float | None          # messages per second; None = as fast as possible
    history_ms: int = 7 * DAY   # unpaced: event times spread over the last `history`
    traffic: TrafficSettings | None = None
    progress: bool = True
    batch: int = 1              # events per message; > 1 sends batch messages of `shape`
    shape: str = "array"        # array (a JSON array) or ndjson (one event per line)
    segment: bool = False       # each event as a Segment-spec track message (the shipped [mapping]'s names)


def generate(settings: Settings, options: GenerateOptions) -> Counter[str]:
    """Send the messages; returns how many of each kind were sent."""
    start = now_ms()
    if options.rate:
        first, span = start, int(options.count / options.rate * 1000)
    else:
        first, span = start - options.history_ms, options.history_ms
    traffic = TrafficGenerator(options.traffic or TrafficSettings())
    # idempotent: a send retried after a broker loss is written once (a cluster's leader can change mid-run)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5, batch_size=256 * 1024, compression_type=None, client_id="engage-generate",
                             **kafka_options(settings))
    sent: Counter[str] = Counter()
    began = time.monotonic()
    last_report = began
    try:
        messages = traffic.messages(options.count, first, span)
        if options.segment:
            mapping = load_config().mapping
            messages = (as_segment(message, mapping) for message in messages)
        if options.batch > 1:
            grouped = batched(messages, options.batch, options.shape, partition_of(producer, settings.events_topic))
        else:
            grouped = ((message, [message]) for message in messages)
        done = 0
        for message, events in grouped:
            if options.rate:
                due = began + done / options.rate    # the rate is in events per second
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(settings.events_topic, key=message.key or None, value=message.value)
            sent.update(e.kind.value for e in events)
            done += len(events)
            if options.progress and time.monotonic() - last_report >= 0.5:
                last_report = time.monotonic()
                _progress(done, options.count, last_report - began)
        producer.flush()
    finally:
        producer.close()
    if options.progress:
        _progress(options.count, options.count, time.monotonic() - began)
        sys.stderr.write("\n")
    return sent


def partition_of(producer: KafkaProducer, topic: str) -> Callable[[bytes], int]:
    """The partition Kafka's default partitioner picks for a key (murmur2, as the Java client)."""
    count = len(producer.partitions_for(topic))
    return lambda key: (murmur2(key) & 0x7FFFFFFF) % count if key else 0


def _progress(done: int, total: int, elapsed: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} events, {rate:,.0f}/s")
    sys.stderr.flush()
