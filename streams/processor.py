"""One batch of raw Kafka messages through the pure core into Redis.

The processor decodes and validates with the core, loads the batch's customers from
Redis shard by shard, lets the core settle each shard's events (dedup, time gates, state
update, alert rules, standings) into deltas, and writes each shard's deltas atomically.
No scoring rule lives here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from scoring.alerts import Alert
from scoring.config import Config
from scoring.deltas import Settled, settle_batch, settle_due
from scoring.engine import Outcome, Result
from scoring.events import Event
from scoring.messages import unpack
from scoring.scores import ScoreCard
from scoring.contributions import ANY_FEATURE
from scoring.standing import activity_counted_from
from scoring.windows import retained_from_bucket
from streams.store import SHARDS, Keys, RedisStore


@dataclass(frozen=True, slots=True)
class Incoming:
    """A raw message and where it came from."""

    value: bytes
    key: bytes | None = None
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp_ms: int | None = None   # broker append time: the clock for the time gates
    index: int | None = None          # a rejected event's position inside a batch message


@dataclass
class Processed:
    outcomes: list[tuple[Incoming, Result]] = field(default_factory=list)  # one per message, in order
    alerts: list[Alert] = field(default_factory=list)
    cards: list[ScoreCard] = field(default_factory=list)                   # touched customers, after
    now_ms: int = 0

    def count(self, outcome: Outcome) -> int:
        return sum(1 for _, r in self.outcomes if r.outcome is outcome)

    def rejections(self) -> list[tuple[Incoming, Result]]:
        return [(m, r) for m, r in self.outcomes if r.outcome is Outcome.REJECTED]


class BatchProcessor:
    def __init__(self, config: Config, store: RedisStore) -> None:
        self.config = config
        self.store = store

    async def process(self, batch: list[Incoming], now_ms: int) -> Processed:
        decoded = [(message, item) for message in batch for item in unpack(message.value, self.config)]
        events = [item.event for _, item in decoded if item.event is not None]
        clocks = [m.timestamp_ms or now_ms for m, item in decoded if item.event is not None]

        # the customers of a state shard share a hash slot: each shard's changes are one atomic
        # write (and on a single Redis, the whole batch is one)
        by_shard: dict[int, list[int]] = {}
        for position, event in enumerate(events):
            by_shard.setdefault(Keys.shard_of(event.customer_id), []).append(position)
        outcomes: list[Result | None] = [None] * len(events)
        processed = Processed(now_ms=now_ms)
        for positions, settled in await self._settle(by_shard, events, clocks, now_ms):
            for position, result in zip(positions, settled.results):
                outcomes[position] = result
            processed.alerts += settled.alerts
            processed.cards += settled.cards

        # outputs in the order of each customer's first accepted event (as the core orders them)
        first: dict[str, int] = {}
        for position, result in enumerate(outcomes):
            if result is not None and result.outcome is Outcome.ACCEPTED:
                first.setdefault(events[position].customer_id, position)
        processed.cards.sort(key=lambda card: first[card.customer_id])
        processed.alerts.sort(key=lambda alert: first[alert.customer_id])

        applied = iter(outcomes)
        for message, item in decoded:
            result = next(applied) if item.event is not None else Result.rejected(item.rejection)  # type: ignore[arg-type]
            if result.outcome is Outcome.REJECTED and item.index is not None:
                # an event inside a batch message is dead-lettered with its own bytes and position
                message = replace(message, value=item.original(message.value), index=item.index)
            processed.outcomes.append((message, result))  # type: ignore[arg-type]
        return processed

    async def _settle(self, by_shard: dict[int, list[int]], events: list[Event], clocks: list[int],
                      now_ms: int) -> list[tuple[list[int], Settled]]:
        """Read the customers, let the core settle each shard's events, write the deltas.

        Everything is computed before anything is written, so a failure in the core writes
        nothing. A shard whose customers moved on since they were read (another writer) is
        read and settled again.
        """
        pending = dict(by_shard)
        done: list[tuple[list[int], Settled]] = []
        while pending:
            wanted: dict[str, list[str]] = {}
            for positions in pending.values():
                for p in positions:
                    wanted.setdefault(events[p].customer_id, []).append(events[p].event_id)
            loaded = await self.store.load(wanted, wanted)

            def settle() -> dict[int, Settled]:
                out = {}
                for shard, positions in pending.items():
                    mine = {events[p].customer_id for p in positions}
                    out[shard] = settle_batch({c: s for c, s in loaded.stored.items() if c in mine},
                                              [events[p] for p in positions], [clocks[p] for p in positions],
                                              now_ms, self.config)
                return out

            # pure CPU work in a thread: the event loop keeps answering the API between GIL turns
            settled = await asyncio.to_thread(settle)
            written = await self.store.write_shards({shard: s.deltas for shard, s in settled.items()},
                                                    loaded.versions, self.config)
            for shard in written:
                done.append((pending.pop(shard), settled[shard]))
        return done

    async def sweep(self, now_ms: int, chunk: int = 200) -> list[Alert]:
        """Re-score the customers whose standing time alone has changed by now (and only those)."""
        fired: list[Alert] = []
        oldest = retained_from_bucket(now_ms, self.config)
        counted_from = activity_counted_from(now_ms, self.config)
        for shard in range(SHARDS):
            await self.store.drop_old_totals(shard, oldest)
            while True:
                due = await self.store.due(shard, now_ms, chunk)
                if not due:
                    break
                loaded = await self.store.load(due)
                if len(loaded.stored) < len(due):   # gone (a replay deleted them): nothing more is due
                    await self.store.forget_due(shard, [c for c in due if c not in loaded.stored])
                settled = await asyncio.to_thread(settle_due, loaded.stored, now_ms, self.config)
                if await self.store.write_shards({shard: settled.deltas}, loaded.versions, self.config):
                    fired += settled.alerts
                if len(due) < chunk:
                    break
            # after the re-scores, which rewrite the facts (and activity entries) of those due
            await self.store.trim_activity(shard, counted_from, (ANY_FEATURE, *self.config.features))
        return fired
