"""The worker's batch lifecycle: process a batch into Redis, publish its outputs, observe it.

* `stream.take_events()` acknowledges the whole buffer in a `finally`, even when the
  body raised. So a batch never escapes `Runtime.handle`: the Redis commit and then the
  publishing are each retried until they succeed (`streams.failures`), and only then does
  the agent go on (and the offsets become committable). At-least-once delivery plus
  event-id dedup in the same Redis transaction gives every event exactly one effect.
* A batch failing the same way every time is applied one message at a time, and each
  message that still fails is dead-lettered as `processing_error` (quarantine).
* The commit also records the batch's outputs in the outbox; `streams.publishing` sends
  them and republishes any a dead worker left behind.

The Faust wiring that drives it is `streams.app`; the HTTP views are `streams.views`.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import generate_latest

from scoring.business import trend_point
from scoring.config import Config, config_mapping
from scoring.engine import Outcome, Result
from scoring.reasons import Reason
from streams import api
from streams.clock import now_ms
from streams.failures import QUARANTINE_AFTER, Deterministic, Retrier
from streams.metrics import Metrics
from streams.processor import BatchProcessor, Incoming, Processed, dead_letter
from streams.publishing import Publisher
from streams.settings import Settings
from streams.stall import StallWatch
from streams.layout import Keys
from streams.store import RedisStore

log = logging.getLogger("engage.worker")


class Runtime:
    """The worker's batch lifecycle, and what the timers and views ask of it: one per worker process."""

    def __init__(self, settings: Settings, config: Config, store: RedisStore, metrics: Metrics,
                 producer: Callable[[], Any], consumer: Callable[[], Any]) -> None:
        self.settings = settings
        self.config = config
        self.worker_id = f"{settings.app_id}-{uuid.uuid4().hex[:8]}"
        self.store = store
        self.metrics = metrics
        self.consumer = consumer      # Faust's consumer, once the app has started
        self.processor = BatchProcessor(config, store, round(settings.outbox_grace_s * 1000),
                                        remember=settings.state_cache_customers)
        self.publisher = Publisher(settings, store, metrics, producer)
        self.retry = Retrier(metrics)
        self.positions: dict[tuple[str, int], int] = {}   # next offset to process, per partition
        self._conflicts_seen = 0
        self._cache_seen = (0, 0, 0)
        self.latest_kpis = api.LatestKpis(store, config, settings.kpi_interval_s)
        self.rescoring = False
        self.stall = StallWatch(settings.stall_after_s)

    async def handle(self, batch: list[Incoming]) -> None:
        """Process one batch to completion; never raises (but for cancellation)."""
        processed = await self._process(batch)
        await self.retry("publish", lambda: self.publish(processed))
        self._observe(processed, batch)

    async def _process(self, batch: list[Incoming]) -> Processed:
        """The batch into Redis; a message that fails the same way every time is quarantined.

        Service errors (Redis, Kafka, the network) are retried for as long as they last.
        Any other error repeating QUARANTINE_AFTER times (a corrupt stored record, a bug)
        would block the partition for good, so the batch is then applied one message at a
        time and each message that still fails is dead-lettered as `processing_error`.
        """
        try:
            return await self.retry("redis", lambda: self.processor.process(batch, now_ms()), QUARANTINE_AFTER)
        except Deterministic:
            log.error("a batch of %d messages fails the same way every time; applying it one message at a time",
                      len(batch))
        merged = Processed(now_ms=now_ms())
        for message in batch:
            try:
                part = await self.retry("redis", lambda: self.processor.process([message], now_ms()), QUARANTINE_AFTER)
            except Deterministic as failure:
                log.error("quarantined %s[%d]@%d to the DLQ: %s", message.topic, message.partition, message.offset,
                          failure.detail)
                result = Result(Outcome.REJECTED, reason=Reason.PROCESSING_ERROR, detail=failure.detail)
                output = dead_letter(message, result, merged.now_ms)
                quarantined = [(Keys.shard_of(output.output_id), output)]
                await self.retry("redis", lambda: self.processor.record(quarantined, merged.now_ms))
                part = Processed([(message, result)], now_ms=merged.now_ms, outputs=quarantined)
            merged.outcomes += part.outcomes
            merged.alerts += part.alerts
            merged.cards += part.cards
            merged.outputs += part.outputs
        return merged

    async def publish(self, processed: Processed) -> None:
        """The batch's outputs (DLQ, scores, alerts), awaited until Kafka has them all, then out of
        the outbox; before the batch counts as done."""
        await self.publisher.send(processed.outputs)

    def _observe(self, processed: Processed, batch: list[Incoming]) -> None:
        m = self.metrics
        m.batch_size.observe(len(batch))
        m.messages.inc(len(batch))
        m.consumed.inc(len(processed.outcomes))
        m.processed.inc(processed.count(Outcome.ACCEPTED))
        m.deduplicated.inc(processed.count(Outcome.DUPLICATE))
        for _, result in processed.rejections():
            m.rejected.labels(reason=result.reason.value).inc()  # type: ignore[union-attr]
        for alert in processed.alerts:
            m.alerts.labels(rule=alert.rule.value).inc()
        for _, result in processed.outcomes:
            if result.outcome is Outcome.ACCEPTED:
                m.latency.observe(max(0.0, (processed.now_ms - result.event.ts_ms) / 1000.0))  # type: ignore[union-attr]
        for message in batch:
            key = (message.topic, message.partition)
            self.positions[key] = max(self.positions.get(key, 0), message.offset + 1)
        self.stall.progressed()
        m.conflicts.inc(self.store.conflicts - self._conflicts_seen)
        self._conflicts_seen = self.store.conflicts
        self._observe_cache()

    def _observe_cache(self) -> None:
        cache, m = self.processor.cache, self.metrics
        now = (cache.hits, cache.misses, cache.stale)
        for result, count, before in zip(("hit", "miss", "stale"), now, self._cache_seen):
            m.cache_reads.labels(result=result).inc(count - before)
        self._cache_seen = now
        m.cache_size.set(len(cache))

    def assigned(self) -> list[Any]:
        return [tp for tp in self.consumer().assignment() if tp.topic == self.settings.events_topic]

    def lag(self) -> int:
        """Messages waiting in the assigned partitions: each one's high watermark less the next offset
        to process, which is the group's committed offset until this worker processes a message of
        the partition (one back from another worker must not count what that worker processed)."""
        consumer = self.consumer()
        committed = getattr(consumer, "_committed_offset", {})   # Faust's: the next offset to read, per partition
        total = 0
        for tp in self.assigned():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                start = max(self.positions.get((tp.topic, tp.partition), 0), committed.get(tp) or 0)
                total += max(0, highwater - start)
        return total

    def forget(self, revoked: Iterable[Any]) -> None:
        """Positions of partitions taken away: another worker moves them on meanwhile."""
        for tp in revoked:
            self.positions.pop((tp.topic, tp.partition), None)

    async def adopt_config(self) -> None:
        """A scoring config other than the one the stored standings were computed with: re-score all.

        Scores themselves are derived from counters at read time; the stored standings
        (leaderboards, at-risk, KPI sums) are made due now, and the sweep re-scores them in
        the background while the worker consumes. /readyz and engagement_due_customers show it.
        """
        # retried like a batch: a Redis that is down or full at start-up must not crash the worker
        fingerprint = config_fingerprint(self.config)
        if await self.retry("redis", lambda: self.store.adopt_config(fingerprint)):
            marked = await self.retry("redis", lambda: self.store.mark_all_due(now_ms()))
            self.rescoring = True
            log.warning("scoring config changed: re-scoring the standings of %d customers in the background", marked)

    async def sweep(self) -> None:
        """Re-score the customers that time alone has changed (due), and publish their alerts;
        then record this bucket's KPI trend point. Here and not with every KPI answer: a write on
        the /metrics path would hang every scrape while Redis refuses writes."""
        swept = await self.processor.sweep(now_ms())
        if swept.outputs:
            await self.retry("publish", lambda: self.publish(swept))
        for alert in (*swept.alerts, *swept.account_alerts):
            self.metrics.alerts.labels(rule=alert.rule.value).inc()
        self.metrics.sweeps.inc()
        self._observe_cache()
        await self.record_trend(await self.latest_kpis.get())

    async def record_trend(self, kpis: dict[str, Any]) -> None:
        """Keep the headline KPIs of this bucket (GET /kpis/trend), dropping points past the KPI window."""
        bucket, point = trend_point(kpis, self.config)
        await self.store.record_kpi_trend(bucket, point, bucket - self.config.kpis.window_ms // self.config.scoring.bucket_ms)

    async def metrics_payload(self) -> bytes:
        """KPI gauges from the shared aggregates (computed at most once per ENGAGE_KPI_INTERVAL_S), pipeline metrics.

        When Redis cannot answer, the pipeline metrics are served all the same (retries, lag, the
        out-of-memory count are what an operator needs then) and the Redis-derived gauges keep
        their last values; `engagement_redis_read_failures_total` says so.
        """
        self.metrics.lag.set(self.lag())
        self.metrics.assigned.set(len(self.assigned()))
        try:
            self.metrics.kpi_gauges.latest = await self.latest_kpis.get()
            self.metrics.due.set(await self.store.due_count(now_ms()))
            self.metrics.outbox.set(await self.store.outbox_size())
        except Exception as exc:  # noqa: BLE001 - /metrics must not fail with Redis; /readyz reports it
            self.metrics.redis_read_failures.inc()
            log.warning("/metrics: the Redis-derived gauges keep their last values: %s", exc)
        return generate_latest(self.metrics.registry)

    async def ready(self) -> tuple[bool, str]:
        try:
            await self.store.ping()
        except Exception as exc:  # noqa: BLE001
            return False, f"redis unreachable: {exc}"
        if self.retry.failing and self.retry.out_of_memory:
            return False, "Redis refuses writes at its maxmemory (OOM): the batch is being retried; free memory or " \
                          "raise maxmemory"
        if self.retry.failing:
            return False, "the last batch is being retried"
        if self.rescoring:
            due = await self.store.due_count(now_ms())
            if due:
                return True, f"re-scoring after a config change: {due} customers to go"
            self.rescoring = False
        stalled = self.stall.stalled_for()
        if stalled is not None:
            return False, f"{self.stall.lag} messages waiting and none consumed for {stalled:.0f} s"
        return True, "ok"


def config_fingerprint(config: Config) -> str:
    """Changes whenever any scoring setting does (the stored standings were computed with one)."""
    # the config as its TOML tables (config_mapping): independent of how the classes are laid out
    canonical = orjson.dumps(config_mapping(config), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]
