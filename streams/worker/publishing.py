"""Publishing a batch's outputs, and republishing the ones a worker left behind.

Outputs (dead letters, score cards, alerts) are written to the outbox in the same Redis
call as the state change that made them (`streams.state.outbox`). Here they go to their topics;
each is deleted from the outbox only after Kafka acknowledged it, and `redrive` republishes
the entries whose grace has passed (their worker died, or never saw the acknowledgement).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streams.clock import now_ms
from streams.settings import Settings
from streams.state.layout import SHARDS
from streams.state.outbox import Kind, Output
from streams.state.ports import OutboxStore
from streams.worker.metrics import Metrics

log = logging.getLogger("engage.worker")


class Publisher:
    def __init__(self, settings: Settings, store: OutboxStore, metrics: Metrics, producer: Callable[[], Any],
                 retry: Callable[..., Awaitable[Any]] | None = None) -> None:
        self.store = store
        self.retry = retry            # the acknowledgement's own retries (streams.worker.failures.Retrier)
        self.metrics = metrics
        self.producer = producer      # Faust's producer, once the app has started
        self.grace_ms = round(settings.outbox_grace_s * 1000)
        self.topics = {Kind.DEAD_LETTER: settings.dlq_topic, Kind.SCORE: settings.scores_topic,
                       Kind.ALERT: settings.alerts_topic}

    async def send(self, outputs: list[tuple[int, Output]]) -> None:
        """Publish outputs, wait for every acknowledgement, then delete them from the outbox."""
        # straight to Faust's producer: Topic.send's per-message machinery (FutureMessage,
        # callbacks, channel) cost ~10 % of the worker at one score message per customer
        send = self.producer().send
        sends = [await send(self.topics[output.kind], output.key, output.value, None, None, None)
                 for _, output in outputs]
        if sends:
            await asyncio.gather(*sends)
            # retried alone: retrying the whole send would publish everything again
            if self.retry is not None:
                await self.retry("redis", lambda: self.store.acknowledge_outputs(outputs))
            else:
                await self.store.acknowledge_outputs(outputs)
        await self.store.push_recent_alerts([o.value for _, o in outputs if o.kind is Kind.ALERT])

    async def redrive(self, limit: int = 500) -> int:
        """Publish the outputs another worker (or this one, before a restart) recorded and never
        saw acknowledged: those whose grace has passed. Returns how many."""
        total = 0
        for shard in range(SHARDS):
            while True:
                at = now_ms()
                claimed = await self.store.claim_outputs(shard, at, at + self.grace_ms, limit)
                if not claimed:
                    break
                await self.send([(shard, output) for output in claimed])
                total += len(claimed)
                self.metrics.outbox_redriven.inc(len(claimed))
                if len(claimed) < limit:
                    break
        if total:
            log.warning("published %d outputs left in the outbox by a worker that did not see them acknowledged",
                        total)
        return total
