"""The worker's batch lifecycle: write a batch into Redis, publish its outputs, observe it.

* `stream.take_events()` acknowledges the whole buffer in a `finally`, even when the
  body raised. So a batch never escapes `BatchLifecycle.handle`: the Redis write and then the
  publishing are each retried until they succeed (`streams.worker.failures`), and only then
  does the agent go on (and the offsets become committable). At-least-once delivery plus
  event-id dedup in the same Redis transaction gives every event exactly one effect.
* A batch failing the same way every time is applied one message at a time, and each
  message that still fails is dead-lettered as `processing_error` (quarantine).
* The write also records the batch's outputs in the outbox; `streams.worker.publishing` sends
  them and republishes any a dead worker left behind.
"""

from __future__ import annotations

import asyncio
import logging

from scoring.engine import Outcome, Result
from scoring.reasons import Reason
from streams.clock import now_ms
from streams.state.layout import Keys
from streams.state.store import RedisStore
from streams.worker.batch import Incoming, Written
from streams.worker.failures import QUARANTINE_AFTER, Deterministic, Retrier
from streams.worker.metrics import Metrics
from streams.worker.progress import Progress
from streams.worker.publishing import Publisher
from streams.worker.writer import BatchWriter, dead_letter

log = logging.getLogger("engage.worker")


class BatchLifecycle:
    """One batch from the consumer to Kafka's acknowledgements of its outputs."""

    def __init__(self, store: RedisStore, writer: BatchWriter, publisher: Publisher, retry: Retrier,
                 metrics: Metrics, progress: Progress, adopted: asyncio.Event | None = None) -> None:
        self.store, self.writer, self.publisher, self.retry = store, writer, publisher, retry
        self.metrics, self.progress = metrics, progress
        self.adopted = adopted or _set_event()    # set once the worker's scoring config is the prefix's
        self._conflicts_seen = 0
        self._cache_seen = (0, 0, 0)

    async def handle(self, batch: list[Incoming]) -> None:
        """Write one batch, publish its outputs, observe it; never raises (but for cancellation)."""
        await self.adopted.wait()
        written = await self._write(batch)
        await self.retry("publish", lambda: self.publisher.send(written.outputs))
        self._observe(written, batch)

    async def _write(self, batch: list[Incoming]) -> Written:
        """The batch into Redis; a message that fails the same way every time is quarantined.

        Service errors (Redis, Kafka, the network) are retried for as long as they last.
        Any other error repeating QUARANTINE_AFTER times (a corrupt stored record, a bug)
        would block the partition for good, so the batch is then applied one message at a
        time and each message that still fails is dead-lettered as `processing_error`.
        """
        try:
            return await self.retry("redis", lambda: self.writer.write(batch, now_ms()), QUARANTINE_AFTER)
        except Deterministic:
            log.error("a batch of %d messages fails the same way every time; applying it one message at a time",
                      len(batch))
        merged = Written(now_ms=now_ms())
        for message in batch:
            try:
                part = await self.retry("redis", lambda: self.writer.write([message], now_ms()), QUARANTINE_AFTER)
            except Deterministic as failure:
                log.error("quarantined %s[%d]@%d to the DLQ: %s", message.topic, message.partition, message.offset,
                          failure.detail)
                result = Result(Outcome.REJECTED, reason=Reason.PROCESSING_ERROR, detail=failure.detail)
                output = dead_letter(message, result, merged.now_ms)
                quarantined = [(Keys.shard_of(output.output_id), output)]
                await self.retry("redis", lambda: self.writer.record(quarantined, merged.now_ms))
                part = Written([(message, result)], now_ms=merged.now_ms, outputs=quarantined)
            merged.outcomes += part.outcomes
            merged.alerts += part.alerts
            merged.cards += part.cards
            merged.outputs += part.outputs
        return merged

    def _observe(self, written: Written, batch: list[Incoming]) -> None:
        m = self.metrics
        m.batch_size.observe(len(batch))
        m.messages.inc(len(batch))
        m.consumed.inc(len(written.outcomes))
        m.processed.inc(written.count(Outcome.ACCEPTED))
        m.deduplicated.inc(written.count(Outcome.DUPLICATE))
        for _, result in written.rejections():
            m.rejected.labels(reason=result.reason.value).inc()  # type: ignore[union-attr]
        for alert in written.alerts:
            m.alerts.labels(rule=alert.rule.value).inc()
        for _, result in written.outcomes:
            if result.outcome is Outcome.ACCEPTED:
                m.latency.observe(max(0.0, (written.now_ms - result.event.ts_ms) / 1000.0))  # type: ignore[union-attr]
        self.progress.advanced(batch)
        m.conflicts.inc(self.store.conflicts - self._conflicts_seen)
        self._conflicts_seen = self.store.conflicts
        self.observe_cache()

    def observe_cache(self) -> None:
        cache, m = self.writer.cache, self.metrics
        now = (cache.hits, cache.misses, cache.stale)
        for result, count, before in zip(("hit", "miss", "stale"), now, self._cache_seen):
            m.cache_reads.labels(result=result).inc(count - before)
        self._cache_seen = now
        m.cache_size.set(len(cache))


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event
