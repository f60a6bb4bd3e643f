"""One batch of raw Kafka messages through the pure core into Redis.

The processor decodes and validates with the core, loads the batch's customers from
Redis, lets the core's own :class:`~scoring.engine.Scorer` apply the batch (dedup,
time gates, state update, alert rules), and stores the touched customers in one
transaction. No scoring rule lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scoring.alerts import Alert
from scoring.config import Config
from scoring.engine import Outcome, Result, Scorer
from scoring.events import Event, decode_event
from scoring.reasons import EventRejected
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
        decoded: list[tuple[Incoming, Event | EventRejected]] = []
        for message in batch:
            try:
                decoded.append((message, decode_event(message.value, self.config)))
            except EventRejected as rejected:
                decoded.append((message, rejected))
        events = [item for _, item in decoded if isinstance(item, Event)]
        clocks = [m.timestamp_ms or now_ms for m, item in decoded if isinstance(item, Event)]

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
                if isinstance(item, EventRejected):
                    result = Result.rejected(item)
                else:
                    result = next(applied)
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
