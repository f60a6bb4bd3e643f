"""The transactional outbox: a batch's outputs are kept in Redis until Kafka has them.

The same atomic script call that applies a shard's changes also writes that shard's
outputs (score cards, alerts, dead letters) into the shard's outbox. The worker then
publishes them and deletes each one only after Kafka acknowledged it. A worker that dies
in between leaves them in Redis: once an entry is older than `ENGAGE_OUTBOX_GRACE_S`, any
worker of the key prefix claims it (for one more grace) and publishes it again. Delivery is
at-least-once; every output carries a stable `id` (streams.codec) so consumers drop repeats.

Two kinds of entry:

* an **event** (an alert, a dead letter) is one entry per output, its field the output id;
  a dead letter's id is its source position, so the same rejection recorded twice (a
  redelivered batch) is the same entry;
* a **score card** is the customer's *latest* score: one field per customer (`s:<id>`),
  which a newer batch's card replaces. A card left behind by a crash is therefore never
  published after a newer one of the same customer (the compacted scores topic does not
  go back in time), and a publish deletes an entry only while it still holds the card sent.

Entries, per state shard `{s}` (so they are written in the same slot as the state):

    <p>:{s}:out     HASH  field -> JSON [output id, kind, key (latin-1), value]
    <p>:{s}:out:at  ZSET  field -> when a redrive may claim it (ms)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import orjson

from scoring.account_alerts import AccountAlert
from scoring.alerts import Alert
from scoring.scores import ScoreCard
from streams import codec


class Kind(StrEnum):
    """What an output is, and so which topic it goes to."""

    DEAD_LETTER = "dlq"
    SCORE = "score"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class Output:
    """One message to publish, and its place in the outbox."""

    field: str             # outbox field: `a:`/`d:` + the output id, or `s:<customer>` for a score card
    output_id: str         # the message's "id"
    kind: Kind
    key: bytes | None
    value: bytes

    def entry(self) -> bytes:
        key = None if self.key is None else self.key.decode("latin-1")   # any key bytes, losslessly
        return orjson.dumps([self.output_id, self.kind.value, key, self.value.decode("utf-8")])

    @classmethod
    def from_entry(cls, field: str, raw: bytes) -> Output:
        output_id, kind, key, value = orjson.loads(raw)
        return cls(field, output_id, Kind(kind), None if key is None else key.encode("latin-1"),
                   value.encode("utf-8"))


def alert_output(alert: Alert) -> Output:
    output_id = codec.alert_id(alert.customer_id, alert.rule.value, alert.as_of_ms)
    return Output(f"a:{output_id}", output_id, Kind.ALERT, alert.customer_id.encode(), codec.alert_message(alert))


def account_alert_output(alert: AccountAlert) -> Output:
    output_id = codec.alert_id(f"account:{alert.account_id}", alert.rule.value, alert.as_of_ms)
    return Output(f"a:{output_id}", output_id, Kind.ALERT, alert.account_id.encode(),
                  codec.account_alert_message(alert))


def score_output(card: ScoreCard) -> Output:
    return Output(f"s:{card.customer_id}", codec.score_id(card.customer_id, card.as_of_ms), Kind.SCORE,
                  card.customer_id.encode(), codec.score_message(card))


def dead_letter_output(raw: bytes, key: bytes | None, reason: str, detail: str, field: str | None, topic: str,
                       partition: int, offset: int, now_ms: int, index: int | None = None) -> Output:
    output_id = codec.dead_letter_id(topic, partition, offset, index)
    return Output(f"d:{output_id}", output_id, Kind.DEAD_LETTER, key,
                  codec.dead_letter_message(raw, key, reason, detail, field, topic, partition, offset, now_ms, index))


def record(ops, out_key: str, at_key: str, outputs: Iterable[Output], claimable_at_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Add the outputs to a script call's commands (streams.state.layout.Ops), beside the state they came with."""
    outputs = list(outputs)
    ops.add_many("HSET", out_key, ((o.field, o.entry()) for o in outputs))
    ops.add_many("ZADD", at_key, ((claimable_at_ms, o.field) for o in outputs))
