"""One scenario run through the core's per-event path, dumped to a text that tells every value's
type: the differential test runs it in this process (the compiled core) and in a reference
process started with `ENGAGE_CORE=interpreted`, and compares the texts.

`python -m tests.scoring.core_runs` is that reference process: it reads pickled scenarios on
stdin and answers each with its pickled dumps, until stdin closes.
"""

from __future__ import annotations

import dataclasses
import enum
import pickle
import struct
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

from scoring.business import business_kpis
from scoring.config import load_config
from scoring.deltas import AggregateBook, Stored, settle_batch, settle_due
from scoring.engine import Scorer
from scoring.messages import unpack
from tests.scoring.test_standing import SHORT, SHORT_OVERRIDES

# the same short windows under other weights and measures: a config change the standings follow
MEASURES = {
    "tickets": {"kind": "penalty", "type": "ticket_opened", "weight": 3, "target": 2},
    "nps": {"kind": "average", "type": "nps_response", "weight": 4, "ranges": [[0, 0], [7, 50], [9, 100]]},
    "csat": {"kind": "average", "type": "csat_response", "weight": 2, "linear": [1, 5], "missing": 50},
    "seats": {"kind": "trait", "trait": "seats_used", "per": "arr", "weight": 1, "linear": [0, 1]},
}
# ... and a customer's segment its `plan` trait (the events' `segment` field no longer counts)
CHANGED = load_config(overrides={**SHORT_OVERRIDES, "weights": {"purchase": 10, "page_view": 2, "like": 4},
                                 "measures": MEASURES, "scoring": {**SHORT_OVERRIDES["scoring"], "segment_from": "plan"},
                                 "scorecards": {"pro": {"weights": {"like": 9}}}})
CONFIGS = {"short": SHORT, "changed": CHANGED}


def plain(value: Any) -> Any:
    """The value as nested builtins whose repr tells ints from floats and keeps every order."""
    if value is None or isinstance(value, (bool, bytes)):
        return value
    if isinstance(value, enum.Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, (str, int, float)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, [(f.name, plain(getattr(value, f.name))) for f in dataclasses.fields(value)])
    if isinstance(value, Mapping):
        return ("map", [(plain(k), plain(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [plain(v) for v in value])
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(repr(plain(v)) for v in value))
    if isinstance(value, Exception):       # a rejection: its reason, detail and field
        return (type(value).__name__, plain(value.args), plain(vars(value)))
    raise TypeError(f"no plain form for {type(value).__name__}")


def dump(value: Any) -> str:
    return repr(plain(value))


def run(scenario: list[tuple[str, Any]]) -> list[str]:
    """Steps of a scenario, each dumped:

    * ("batch", (now, [raw message, ...])): the worker's path (unpack, settle_batch on the stored
      customers, the aggregates' deltas) and the reference Scorer's (process_batch), side by side;
    * ("due", (now, config name)): the customers due by then re-scored (eviction, time-driven
      alerts, standings), under that config;
    * ("read", now): KPIs, leaderboards, accounts and every customer's card.
    """
    config = SHORT
    stored: dict[str, Stored] = {}
    book = AggregateBook(config)
    scorer = Scorer(config)
    out = []
    for kind, arg in scenario:
        if kind == "batch":
            now, raws = arg
            items = [item for raw in raws for item in unpack(raw, config)]
            events = [i.event for i in items if i.event is not None]
            ids = {e.customer_id for e in events}
            settled = settle_batch({c: stored[c] for c in ids if c in stored}, events, [now] * len(events), now, config)
            for delta in settled.deltas:
                book.apply(delta)
            stored.update(settled.stored)
            reference = scorer.process_batch(list(raws), now)
            out.append(dump((items, settled, reference)))
        elif kind == "due":
            now, name = arg
            due = book.due_by(now)
            if CONFIGS[name] is not config:     # a config change re-scores everyone, as the worker does
                config = scorer.config = book.config = CONFIGS[name]
                due = sorted(stored)
            settled = settle_due({c: stored[c] for c in due}, now, config)
            for delta in settled.deltas:
                book.apply(delta)
            stored.update(settled.stored)
            out.append(dump((due, settled, scorer.sweep(now))))
        else:
            now = arg
            out.append(dump((business_kpis(scorer.customers.values(), now, config),
                             scorer.leaderboard(now, limit=3), scorer.leaderboard(now, limit=3, bottom=True),
                             [scorer.account(a, now) for a in ("a1", "a2")],
                             [scorer.customer(c, now) for c in sorted(scorer.customers)],
                             sorted(book.standings.items()))))
    return out


def send(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value)
    stream.write(struct.pack(">I", len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError
    return pickle.loads(stream.read(struct.unpack(">I", head)[0]))


def main() -> None:
    from scoring import build

    send(sys.stdout.buffer, build.CHOSEN)
    while True:
        try:
            scenario = receive(sys.stdin.buffer)
        except EOFError:
            return
        try:
            send(sys.stdout.buffer, ("ok", run(scenario)))
        except Exception as exc:  # noqa: BLE001 - the test shows it as the reference's failure
            send(sys.stdout.buffer, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    main()
