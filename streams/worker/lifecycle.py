"""The worker's batch lifecycle: write a batch into Redis, publish its outputs, observe it.

* A batch's events are acknowledged to Faust (their offsets committable) only once its Redis
  write is done, confirmed by the replicas when asked for (`ENGAGE_REDIS_MIN_REPLICAS`), and its
  outputs are published. So a batch never escapes `BatchLifecycle`: the Redis write and then the
  publishing are each retried until they succeed (`streams.worker.failures`). At-least-once
  delivery plus event-id dedup in the same Redis transaction gives every event exactly one effect.
* Pipelined (`pipelined`): once a batch is written, the replicas' confirmation, the publishing
  and the acknowledgement run in a task of their own while the next batch is read and scored.
  The next batch writes only after that confirmation: a write lost with its primary is made
  again before anything later, so the state never holds a batch's successor without it.
  A batch's confirmation waits for the batch before it to be published: outputs are published,
  and batches acknowledged, in batch order, and at most two batches are written and unpublished.
* A batch failing the same way every time is applied one message at a time, and each
  message that still fails is dead-lettered as `processing_error` (quarantine).
* The write also records the batch's outputs in the outbox; `streams.worker.publishing` sends
  them and republishes any a dead worker left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

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
Acknowledge = Callable[[], Awaitable[object]]


class BatchLifecycle:
    """One batch from the consumer to Kafka's acknowledgements of its outputs."""

    def __init__(self, store: RedisStore, writer: BatchWriter, publisher: Publisher, retry: Retrier,
                 metrics: Metrics, progress: Progress, adopted: asyncio.Event | None = None) -> None:
        self.store, self.writer, self.publisher, self.retry = store, writer, publisher, retry
        self.metrics, self.progress = metrics, progress
        self.adopted = adopted or _set_event()    # set once the worker's scoring config is the prefix's
        self._conflicts_seen = 0
        self._cache_seen = (0, 0, 0)
        self._tail: asyncio.Task[None] | None = None     # the last batch's confirmation, publishing, ack
        self._confirmed = _set_event()                   # set once the last batch's write is confirmed

    async def handle(self, batch: list[Incoming]) -> None:
        """Write one batch, publish its outputs, observe it, all before returning; never raises
        (but for cancellation)."""
        await self.pipelined(batch)
        await self.drain()

    async def pipelined(self, batch: list[Incoming], acknowledge: Acknowledge | None = None) -> None:
        """Write one batch into Redis, once the previous batch's write is confirmed; its own
        confirmation, publishing and then `acknowledge()` run in a task that the next call (or
        `drain`) follows. Raises what made the previous batch's task fail (it never should)."""
        await self.adopted.wait()
        previous, previous_confirmed = self._tail, self._confirmed
        if previous is not None and previous.done():
            previous.result()
        written = await self._write(batch, confirm=False, ready=lambda: _confirmed(previous_confirmed, previous))
        self._confirmed = confirmed = asyncio.Event()
        self._tail = asyncio.create_task(self._finish(batch, written, previous, confirmed, acknowledge))

    async def drain(self) -> None:
        """Wait for the last batch's confirmation, publishing and acknowledgement."""
        if self._tail is not None:
            await self._tail

    def cancel(self) -> None:
        """The agent stops: leave the batch in flight unacknowledged (it is consumed again, and its
        recorded outputs stay in the outbox for a redrive)."""
        if self._tail is not None:
            self._tail.cancel()

    async def _finish(self, batch: list[Incoming], written: Written, previous: asyncio.Task[None] | None,
                      confirmed: asyncio.Event, acknowledge: Acknowledge | None) -> None:
        if previous is not None:
            # in batch order; and the next batch writes only once this one is confirmed, so that no more
            # than two batches are ever written and unpublished (a publish failing for minutes holds the
            # agent, as it holds Kafka's commits, instead of letting batches pile up in memory)
            await previous
        written = await self._confirm(batch, written)
        confirmed.set()
        await self.retry("publish", lambda: self.publisher.send(written.outputs))
        self._observe(written, batch)
        if acknowledge is not None:
            await acknowledge()

    async def _confirm(self, batch: list[Incoming], written: Written) -> Written:
        """The batch's writes confirmed by the replicas. When they are not, the write may be lost
        with its primary, so the batch is written again, confirmed, retried and quarantined as any
        write (events that landed are duplicates then: they write nothing, and are confirmed)."""
        first = True

        async def step() -> Written:
            nonlocal first
            if first:
                first = False
                await self.store.confirm(written.shards)
                return written
            # written again, confirmed: the first write's marks say nothing now, and a retried write that
            # finds its events already there must not check them (on a replaced primary it never would pass)
            self.store.forget_unconfirmed()
            return await self._write(batch)

        return await self.retry("redis", step)

    async def _write(self, batch: list[Incoming], confirm: bool = True,
                     ready: Callable[[], Awaitable[object]] | None = None) -> Written:
        """The batch into Redis; a message that fails the same way every time is quarantined.

        Service errors (Redis, Kafka, the network) are retried for as long as they last.
        Any other error repeating QUARANTINE_AFTER times (a corrupt stored record, a bug)
        would block the partition for good, so the batch is then applied one message at a
        time and each message that still fails is dead-lettered as `processing_error`.
        """
        try:
            return await self.retry("redis", lambda: self.writer.write(batch, now_ms(), confirm, ready),
                                    QUARANTINE_AFTER)
        except Deterministic:
            log.error("a batch of %d messages fails the same way every time; applying it one message at a time",
                      len(batch))
        if ready is not None:
            await ready()
        merged = Written(now_ms=now_ms())
        for message in batch:
            try:
                part = await self.retry("redis", lambda: self.writer.write([message], now_ms(), confirm),
                                        QUARANTINE_AFTER)
            except Deterministic as failure:
                log.error("quarantined %s[%d]@%d to the DLQ: %s", message.topic, message.partition, message.offset,
                          failure.detail)
                result = Result(Outcome.REJECTED, reason=Reason.PROCESSING_ERROR, detail=failure.detail)
                output = dead_letter(message, result, merged.now_ms)
                quarantined = [(Keys.shard_of(output.output_id), output)]
                shards = await self.retry("redis", lambda: self.writer.record(quarantined, merged.now_ms, confirm))
                part = Written([(message, result)], now_ms=merged.now_ms, outputs=quarantined, shards=shards)
            merged.outcomes += part.outcomes
            merged.alerts += part.alerts
            merged.stale_alerts += part.stale_alerts
            merged.cards += part.cards
            merged.outputs += part.outputs
            merged.shards |= part.shards
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
            if result.reason is Reason.UNMAPPED_EVENT:
                m.count_unmapped(result.subject)
        for alert in written.alerts:
            m.alerts.labels(rule=alert.rule.value).inc()
        for alert in written.stale_alerts:
            m.stale_alerts.labels(rule=alert.rule.value).inc()
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


async def _confirmed(confirmed: asyncio.Event, tail: asyncio.Task[None] | None) -> None:
    """Until `confirmed` is set by `tail`; raises what stopped `tail` when it ended without setting it."""
    if tail is None or confirmed.is_set():
        return
    waiting = asyncio.ensure_future(confirmed.wait())
    await asyncio.wait({waiting, tail}, return_when=asyncio.FIRST_COMPLETED)
    if not confirmed.is_set():
        waiting.cancel()
        tail.result()          # its failure, or CancelledError
        raise RuntimeError("the previous batch's task ended without its write confirmed")
