"""What a batch or a due re-score changed for one customer, as a store can apply it.

The edge keeps each customer whole (`CustomerDelta.after`) and its recent event ids, plus
shared aggregates (per-bucket totals, standing sums, sorted sets). :func:`customer_delta`
says what the work changed: the counter increments the totals add, the new event ids, the
facts the sorted sets follow, the old and new standing and the due time, so the store
executes it without knowing any rule. :class:`AggregateBook` is the same bookkeeping in memory: the
reference that the Redis aggregates must equal, and what the property tests check against
a full recomputation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from scoring import formulas
from scoring.aggregation import add_delta, add_into, assemble, read_plan
from scoring.alerts import RuleState, Snapshot
from scoring.business import Aggregates
from scoring.config import Config
from scoring.scores import ScoreCard
from scoring.standing import Standing, next_change, standing, sum_difference
from scoring.state import CustomerState, Journal


@dataclass(slots=True)
class Facts:
    """The small per-customer facts stored whole (everything but counters, sessions and ids)."""

    watermark_ms: int | None
    last_active_ms: int | None
    last_aer_ms: int | None
    features: Mapping[str, int]
    membership: tuple[tuple[int, int], ...]
    account: tuple[int, str, str] | None
    segment: tuple[int, str, str] | None
    alert_states: Mapping[str, RuleState]
    snapshot: Snapshot | None

    @classmethod
    def of(cls, state: CustomerState, alert_states: Mapping[str, RuleState], snapshot: Snapshot | None) -> Facts:
        return cls(state.watermark_ms, state.last_active_ms, state.last_aer_ms, dict(state.features),
                   tuple(state.membership), state.account, state.segment, dict(alert_states), snapshot)


@dataclass
class CustomerDelta:
    customer_id: str
    counters: dict[int, dict[str, int]] = field(default_factory=dict)      # bucket -> key -> increment
    seen: dict[str, int] = field(default_factory=dict)                     # new event ids -> ts
    seen_floor: int | None = None                                          # ids older than this are forgotten
    facts: Facts | None = None                                             # None: unchanged
    facts_before: Facts | None = None                                      # None: a new customer
    old: Standing | None = None
    new: Standing | None = None
    due_ms: int | None = None                                              # next re-score; None: none pending
    due_changed: bool = True                                               # False: the store holds due_ms already
    after: Stored | None = None                                            # the customer after the work, whole
    at_ms: int = 0                                                         # when the work was done

    @property
    def sums(self) -> dict[str, int]:
        return sum_difference(self.old, self.new)

    @property
    def ended_conditions(self) -> tuple[str, ...]:
        """Alert rules whose condition was active and is no longer: their alerts are resolved
        (scoring.alert_work)."""
        if self.old is None or self.new is None:
            return ()
        return tuple(sorted(set(self.old.alerts) - set(self.new.alerts)))


def customer_delta(journal: Journal, after: CustomerState, facts_before: Facts | None, facts_after: Facts,
                   old: Standing | None, now_ms: int, config: Config, card: ScoreCard | None = None) -> CustomerDelta:
    """What the journal recorded for one customer, plus its new standing and due time."""
    delta = CustomerDelta(after.customer_id, facts=None if facts_after == facts_before else facts_after,
                          facts_before=facts_before, old=old, at_ms=now_ms)
    delta.counters = journal.counters
    delta.seen = journal.ids
    if after.watermark_ms is not None:
        delta.seen_floor = after.watermark_ms - config.time.dedup_horizon_ms
    delta.new = standing(after, facts_after.alert_states, now_ms, config, card)
    delta.due_ms = next_change(after, now_ms, config)
    return delta


@dataclass(frozen=True, slots=True)
class SegmentShare:
    """One customer's change to one segment's aggregates, as a store applies it."""

    segment: str
    counters: Mapping[int, Mapping[str, int]]        # bucket -> key -> increment (negative when leaving)
    sums: Mapping[str, int]                           # standing sums to add
    last_active_ms: int | None = None                 # its last activity to record (changed, or entering)
    features: Mapping[str, int] = field(default_factory=dict)   # feature key -> last use to record
    leaves: tuple[str, ...] | None = None             # leaving: remove it from the activity set and these features'


def segment_shares(delta: CustomerDelta) -> list[SegmentShare]:
    """What `delta` changes in the segments' aggregates: nothing outside a tracked segment, the
    delta itself within one, and a whole removal and a whole addition when the customer moves."""
    old = delta.old.segment if delta.old is not None else None
    new = delta.new.segment if delta.new is not None else old
    facts, was = delta.facts, delta.facts_before
    if old == new:
        if old is None:
            return []
        last = None
        features: dict[str, int] = {}
        if facts is not None:
            if facts.last_active_ms is not None and facts.last_active_ms != (was.last_active_ms if was else None):
                last = facts.last_active_ms
            features = {k: ts for k, ts in facts.features.items() if was is None or was.features.get(k) != ts}
        return [SegmentShare(old, delta.counters, delta.sums, last, features)]
    assert delta.after is not None, "a customer that moves is stored whole"
    state = delta.after.state
    shares = []
    if old is not None:
        before = _less(state.buckets, delta.counters)
        known = set(state.features) | set(was.features if was else ())
        shares.append(SegmentShare(old, {b: {k: -v for k, v in c.items()} for b, c in before.items()},
                                   sum_difference(delta.old, None), leaves=tuple(sorted(known))))
    if new is not None:
        shares.append(SegmentShare(new, {b: {k: v for k, v in c.items() if v} for b, c in state.buckets.items() if c},
                                   sum_difference(None, delta.new), state.last_active_ms, dict(state.features)))
    return shares


def _less(after: Mapping[int, Mapping[str, int]], added: Mapping[int, Mapping[str, int]]) -> dict[int, dict[str, int]]:
    """The counters as they were: `after` less what the work `added` (zeros dropped)."""
    before: dict[int, dict[str, int]] = {}
    for bucket in set(after) | set(added):
        now, plus = after.get(bucket, {}), added.get(bucket, {})
        counters = {k: now.get(k, 0) - plus.get(k, 0) for k in set(now) | set(plus)}
        counters = {k: v for k, v in counters.items() if v}
        if counters:
            before[bucket] = counters
    return before


@dataclass
class AggregateBook:
    """The shared aggregates in memory, kept by applying deltas (the edge keeps them in Redis)."""

    config: Config
    sums: dict[str, int] = field(default_factory=dict)
    totals: dict[int, dict[str, int]] = field(default_factory=dict)       # bucket -> counters, sessions, bounces
    standings: dict[str, Standing] = field(default_factory=dict)
    last_active: dict[str, int] = field(default_factory=dict)
    features: dict[str, dict[str, int]] = field(default_factory=dict)    # feature key -> customer -> last use
    due: dict[str, int] = field(default_factory=dict)
    segments: dict[str, AggregateBook] = field(default_factory=dict)     # segment -> its customers' book

    def apply(self, delta: CustomerDelta) -> None:
        for share in segment_shares(delta):
            self.segments.setdefault(share.segment, AggregateBook(self.config)).take(share, delta)
        add_delta(self.totals, self.sums, delta.counters, delta.sums)
        cid = delta.customer_id
        if delta.new is not None:
            self.standings[cid] = delta.new
        facts = delta.facts
        if facts is not None:
            if facts.last_active_ms is not None:
                self.last_active[cid] = facts.last_active_ms
            for key, ts in facts.features.items():
                self.features.setdefault(key, {})[cid] = ts
        if delta.due_ms is None:
            self.due.pop(cid, None)
        else:
            self.due[cid] = delta.due_ms

    def take(self, share: SegmentShare, delta: CustomerDelta) -> None:
        """A segment's book: one customer's share of it (a move takes it out whole, or puts it in)."""
        add_delta(self.totals, self.sums, share.counters, share.sums)
        cid = delta.customer_id
        if share.leaves is not None:
            self.standings.pop(cid, None)
            self.last_active.pop(cid, None)
            for key in share.leaves:
                self.features.get(key, {}).pop(cid, None)
            return
        if delta.new is not None:
            self.standings[cid] = delta.new
        if share.last_active_ms is not None:
            self.last_active[cid] = share.last_active_ms
        for key, ts in share.features.items():
            self.features.setdefault(key, {})[cid] = ts

    def segment_aggregates(self, segment: str, as_of_ms: int) -> Aggregates:
        """The aggregates of the customers in `segment` now (empty when none has been)."""
        return self.segments.get(segment, AggregateBook(self.config)).aggregates(as_of_ms)

    def due_by(self, now_ms: int) -> list[str]:
        return sorted(cid for cid, at in self.due.items() if at <= now_ms)

    def aggregates(self, as_of_ms: int) -> Aggregates:
        plan = read_plan(as_of_ms, self.config)
        totals: dict[str, int] = {}
        for bucket in plan.buckets:
            add_into(totals, self.totals.get(bucket, {}))
        actives = self.last_active.values()
        return assemble(
            self.sums, totals, {name: _since(actives, start) for name, start in plan.active_since.items()},
            {k: _since(self.features.get(k, {}).values(), plan.active_since["kpi"]) for k in plan.features},
            formulas.median(s.es for s in self.standings.values() if s.scored))


def _since(times: Iterable[int], start: int) -> int:
    return sum(1 for t in times if t >= start)


@dataclass
class Stored:
    """One customer as the store holds it: the core state (with the batch's known event ids),
    the alert rules' memory and the standing last written to the shared aggregates."""

    state: CustomerState
    alert_states: dict[str, RuleState] = field(default_factory=dict)
    snapshot: Snapshot | None = None
    standing: Standing | None = None
    due_ms: int | None = None          # the next re-score written with it (None: none pending)

    def facts(self) -> Facts:
        return Facts.of(self.state, self.alert_states, self.snapshot)


@dataclass
class Settled:
    """A batch (or a due re-score) worked out by the core: outcomes, outputs and the deltas to store."""

    results: list = field(default_factory=list)        # scoring.engine.Result per event, in order
    alerts: list = field(default_factory=list)         # scoring.alerts.Alert, to send
    stale_alerts: list = field(default_factory=list)   # fired and recorded, not sent (alerts.max_age)
    cards: list = field(default_factory=list)          # scoring.scores.ScoreCard of touched customers
    deltas: list[CustomerDelta] = field(default_factory=list)
    stored: dict[str, Stored] = field(default_factory=dict)   # the customers after the work


def settle_batch(stored: Mapping[str, Stored], events: list, clocks: list[int], now_ms: int,
                 config: Config) -> Settled:
    """Run the core over a batch of validated events whose customers are `stored` (those known).

    Dedup, gates, state updates and alert rules are the reference Scorer's own; this adds the
    deltas that take the store from the old to the new customers.
    """
    from scoring.engine import Scorer

    facts_before = _open(stored)
    scorer = Scorer(config, customers={cid: s.state for cid, s in stored.items()},
                    alert_states={cid: dict(s.alert_states) for cid, s in stored.items()},
                    snapshots={cid: s.snapshot for cid, s in stored.items() if s.snapshot is not None},
                    journaled=True)
    result = scorer.process_batch(events, now_ms, clocks)
    settled = Settled(results=result.results, alerts=list(result.alerts), cards=list(result.cards),
                      stale_alerts=scorer.stale_alerts)
    _collect(settled, scorer, result.touched, stored, facts_before, now_ms, config,
             {card.customer_id: card for card in result.cards})
    return settled


def settle_due(stored: Mapping[str, Stored], now_ms: int, config: Config) -> Settled:
    """Re-score customers whose next change is due: eviction, time-driven alert rules, standings."""
    from scoring.engine import Scorer

    facts_before = _open(stored)
    scorer = Scorer(config, customers={cid: s.state for cid, s in stored.items()},
                    alert_states={cid: dict(s.alert_states) for cid, s in stored.items()},
                    snapshots={cid: s.snapshot for cid, s in stored.items() if s.snapshot is not None},
                    journaled=True)
    settled = Settled(alerts=scorer.sweep(now_ms))
    settled.stale_alerts = scorer.stale_alerts
    _collect(settled, scorer, tuple(stored), stored, facts_before, now_ms, config, sweep=True)
    return settled


def _open(stored: Mapping[str, Stored]) -> dict[str, Facts]:
    """Open each customer's journal and remember its facts as they were."""
    for s in stored.values():
        s.state.journal = Journal()
    return {cid: s.facts() for cid, s in stored.items()}


def _collect(settled: Settled, scorer, touched: Iterable[str], stored: Mapping[str, Stored],
             facts_before: Mapping[str, Facts], now_ms: int, config: Config,
             cards: Mapping[str, ScoreCard] | None = None, sweep: bool = False) -> None:
    """The deltas and the customers after the work. A due time equal to the stored one is not
    written again, except by the sweep: a config change moves every due time outside the
    customers (`mark_all_due`), and the sweep is what puts each back."""
    for cid in touched:
        old = stored.get(cid)
        state = scorer.customers[cid]
        after = Stored(state, scorer.alert_states.get(cid, {}), scorer.snapshots.get(cid))
        delta = customer_delta(state.journal or Journal(), state, facts_before.get(cid), after.facts(),
                               old.standing if old else None, now_ms, config, (cards or {}).get(cid))
        after.standing, after.due_ms, delta.after = delta.new, delta.due_ms, after
        if old is not None and not sweep:
            delta.due_changed = delta.due_ms != old.due_ms
        settled.deltas.append(delta)
        settled.stored[cid] = after
    for s in (*stored.values(), *settled.stored.values()):
        s.state.journal = None
