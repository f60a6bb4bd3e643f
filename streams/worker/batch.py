"""A batch's records: the raw messages in (`Incoming`) and what writing them did (`Written`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scoring.account_alerts import AccountAlert
from scoring.alerts import Alert
from scoring.engine import Outcome, Result
from scoring.scores import ScoreCard
from streams.state.outbox import Output


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

    @classmethod
    def of_record(cls, record: Any, timestamp_ms: float | None = None) -> Incoming:
        """An aiokafka, kafka-python or Faust record; `timestamp_ms` when the record's is not in ms."""
        stamp = record.timestamp if timestamp_ms is None else timestamp_ms
        return cls(record.value or b"", record.key, record.topic, record.partition, record.offset, broker_time(stamp))


def broker_time(stamp_ms: float | None) -> int | None:
    """A record's broker timestamp as the time gates' clock: none when the broker gave none (<= 0)."""
    return round(stamp_ms) if stamp_ms and stamp_ms > 0 else None


@dataclass
class Written:
    outcomes: list[tuple[Incoming, Result]] = field(default_factory=list)  # one per message, in order
    alerts: list[Alert] = field(default_factory=list)
    stale_alerts: list[Alert] = field(default_factory=list)                # recorded, not sent (alerts.max_age)
    cards: list[ScoreCard] = field(default_factory=list)                   # touched customers, after
    now_ms: int = 0
    outputs: list[tuple[int, Output]] = field(default_factory=list)       # (shard, output), in publish order
    account_alerts: list[AccountAlert] = field(default_factory=list)      # the sweep's account evaluations
    shards: set[int] = field(default_factory=set)                          # the state shards written to

    def count(self, outcome: Outcome) -> int:
        return sum(1 for _, r in self.outcomes if r.outcome is outcome)

    def rejections(self) -> list[tuple[Incoming, Result]]:
        return [(m, r) for m, r in self.outcomes if r.outcome is Outcome.REJECTED]
