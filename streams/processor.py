"""One batch of raw Kafka messages through the pure core into Redis.

The processor decodes and validates with the core, loads the batch's customers from
Redis, lets the core's own :class:`~scoring.engine.Scorer` apply the batch (dedup,
time gates, state update, alert rules), and stores the touched customers in one
transaction. No scoring rule lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from scoring.alerts import Alert
from scoring.config import Config
from scoring.engine import Outcome, Result, Scorer
from scoring.messages import unpack
from scoring.scores import ScoreCard
from streams.codec import CustomerRecord
from streams.store import Changes, RedisStore


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

        def compute(records: dict[str, CustomerRecord]) -> Changes[Processed]:
            scorer = Scorer(
                self.config,
                customers={cid: r.state for cid, r in records.items()},
                alert_states={cid: dict(r.alert_states) for cid, r in records.items()},
                snapshots={cid: r.snapshot for cid, r in records.items() if r.snapshot is not None},
            )
            batch_result = scorer.process_batch(events, now_ms, clocks)
            applied = iter(batch_result.results)
            processed = Processed(alerts=list(batch_result.alerts), now_ms=now_ms)
            for message, item in decoded:
                result = next(applied) if item.event is not None else Result.rejected(item.rejection)  # type: ignore[arg-type]
                if result.outcome is Outcome.REJECTED and item.index is not None:
                    # an event inside a batch message is dead-lettered with its own bytes and position
                    message = replace(message, value=item.original(message.value), index=item.index)
                processed.outcomes.append((message, result))
            touched = batch_result.touched
            processed.cards = batch_result.cards
            records = {
                cid: CustomerRecord(scorer.customers[cid], scorer.alert_states.get(cid, {}), scorer.snapshots.get(cid))
                for cid in touched
            }
            return Changes(records, processed)

        result = await self.store.transact([e.customer_id for e in events], compute)
        assert result is not None
        return result
