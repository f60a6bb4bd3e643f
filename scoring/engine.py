"""The in-memory reference scorer: the whole scoring pipeline without I/O.

It runs the offline demo and is the reference for the live pipeline: Redis state, the
API and the metrics must equal what this computes over the same accepted events.
The order of checks is fixed and shared with the edge:

1. decode and validate                  -> rejected (reason)
2. event id already seen for customer   -> duplicate (counted once, never re-applied)
3. ts beyond now + max_future_skew      -> rejected ts_in_future
4. ts before watermark - lateness       -> rejected ts_too_late (history, scoring.history_import:
                                           its own duplicate check, and ts_beyond_retention)
5. apply and evict                       -> accepted
6. alert rules, once per event (process) or once per touched customer (process_batch)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from scoring import alerts as alert_rules
from scoring.business import BusinessKpis, business_kpis
from scoring.config import Config
from scoring.contributions import contribution
from scoring.events import Event, decode_event, validate_event
from scoring.history_import import is_imported_duplicate
from scoring.messages import unpack
from scoring.reasons import EventRejected, Reason
from scoring.scores import AccountCard, ScoreCard, account_card, score_card
from scoring.standing import bottom_key, top_key
from scoring.state import CustomerState, Journal
from scoring.windows import is_in_future, is_too_late


Message = bytes | dict[str, Any] | Event  # raw bytes, decoded JSON, or an already validated Event


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(slots=True)
class Result:
    outcome: Outcome
    event: Event | None = None
    reason: Reason | None = None
    detail: str = ""
    field: str | None = None              # the offending field of a rejection, when one is to blame
    alerts: tuple[alert_rules.Alert, ...] = ()
    subject: str | None = None            # what a rejection is about (an unmapped event's name)

    @classmethod
    def rejected(cls, rejection: EventRejected) -> Result:
        return cls(Outcome.REJECTED, reason=rejection.reason, detail=rejection.detail, field=rejection.field,
                   subject=rejection.subject)


def gate(event: Event, state: CustomerState | None, now_ms: int, config: Config) -> Outcome:
    """Duplicate or accepted; raises EventRejected for a time outside the limits (history: its own rules)."""
    if event.imported is not None:
        return Outcome.DUPLICATE if is_imported_duplicate(event, state, now_ms, config) else Outcome.ACCEPTED
    if state is not None and event.event_id in state.seen:
        return Outcome.DUPLICATE
    if is_in_future(event.ts_ms, now_ms, config.time):
        raise EventRejected(Reason.TS_IN_FUTURE, f"ts more than {config.time.max_future_skew_ms} ms ahead of now", "ts")
    if is_too_late(event.ts_ms, state.watermark_ms if state else None, config.time):
        raise EventRejected(
            Reason.TS_TOO_LATE, f"ts more than {config.time.allowed_lateness_ms} ms behind the customer's newest event", "ts"
        )
    return Outcome.ACCEPTED


@dataclass(slots=True)
class BatchResult:
    results: list[Result]                 # one per message, in order
    touched: tuple[str, ...]              # customers whose state changed
    alerts: list[alert_rules.Alert]
    cards: list[ScoreCard]                # the touched customers' scores after the batch (no breakdown)


@dataclass
class Scorer:
    config: Config
    customers: dict[str, CustomerState] = field(default_factory=dict)
    alert_states: dict[str, dict[str, alert_rules.RuleState]] = field(default_factory=dict)
    snapshots: dict[str, alert_rules.Snapshot] = field(default_factory=dict)  # each customer's last evaluation
    evaluate_alerts: bool = True
    journaled: bool = False        # new customers get an open journal (the store records their deltas)
    stale_alerts: list[alert_rules.Alert] = field(default_factory=list)   # fired, recorded, not sent (max_age)

    def process(self, message: Message, now_ms: int) -> Result:
        """Handle one raw message, decoded JSON object or validated Event; alerts evaluated after it."""
        result = self._admit(message, now_ms)
        if result.outcome is Outcome.ACCEPTED and self.evaluate_alerts:
            state = self.customers[result.event.customer_id]
            return Result(Outcome.ACCEPTED, event=result.event, alerts=self._alerts(state, now_ms, result.event.ts_ms))
        return result

    def process_message(self, raw: bytes, now_ms: int) -> list[Result]:
        """Every event of one message (one event, a JSON array or NDJSON: scoring.messages), in order."""
        return [self.process(item.event, now_ms) if item.event is not None else Result.rejected(item.rejection)  # type: ignore[arg-type]
                for item in unpack(raw, self.config)]

    def process_batch(self, messages: list[Message], now_ms: int, clocks: list[int] | None = None) -> BatchResult:
        """Handle messages in order; alert rules run once per touched customer, after the batch.

        This is what the live pipeline calls with a batch's customers loaded from Redis.
        `clocks` optionally gives each message its own processing time (the pipeline uses
        the broker's append time, so a replay gates exactly like the live run did);
        `now_ms` is the time of the alert evaluation.
        """
        times = clocks if clocks is not None else [now_ms] * len(messages)
        results = [self._admit(message, at) for message, at in zip(messages, times, strict=True)]
        touched: dict[str, int] = {}       # customer -> the newest event time among its accepted events
        for r in results:
            if r.outcome is Outcome.ACCEPTED:
                touched[r.event.customer_id] = max(touched.get(r.event.customer_id, r.event.ts_ms), r.event.ts_ms)
        fired: list[alert_rules.Alert] = []
        cards: list[ScoreCard] = []
        for customer_id, newest in touched.items():
            state = self.customers[customer_id]
            if self.evaluate_alerts:
                current = alert_rules.view(state, now_ms, self.config)
                fired.extend(self._evaluate(current, newest))
                cards.append(current.card)
            else:
                cards.append(score_card(state, now_ms, self.config, detail=False))
        return BatchResult(results, tuple(touched), fired, cards)

    def _admit(self, message: Message, now_ms: int) -> Result:
        try:
            if isinstance(message, Event):
                event = message
            elif isinstance(message, bytes):
                event = decode_event(message, self.config)
            else:
                event = validate_event(message, self.config)
            return self.apply(event, now_ms)
        except EventRejected as rejected:
            return Result.rejected(rejected)

    def apply(self, event: Event, now_ms: int) -> Result:
        """Gate and apply a validated event (no alert evaluation). Raises EventRejected for a bad time."""
        state = self.customers.get(event.customer_id)
        if gate(event, state, now_ms, self.config) is Outcome.DUPLICATE:
            return Result(Outcome.DUPLICATE, event=event)
        if state is None:
            state = self.customers[event.customer_id] = CustomerState(
                event.customer_id, journal=Journal() if self.journaled else None)
        state.apply(event, contribution(event, self.config), now_ms, self.config)
        state.evict(now_ms, self.config)
        return Result(Outcome.ACCEPTED, event=event)

    def sweep(self, now_ms: int) -> list[alert_rules.Alert]:
        """Time-driven work: evict old buckets and evaluate inactivity/activation for everyone."""
        fired: list[alert_rules.Alert] = []
        for state in self.customers.values():
            state.evict(now_ms, self.config)
            if self.evaluate_alerts:
                fired.extend(self._alerts(state, now_ms))
        return fired

    def _alerts(self, state: CustomerState, now_ms: int, trigger_ms: int | None = None) -> tuple[alert_rules.Alert, ...]:
        return self._evaluate(alert_rules.view(state, now_ms, self.config), trigger_ms)

    def _evaluate(self, current: alert_rules.View, trigger_ms: int | None = None) -> tuple[alert_rules.Alert, ...]:
        """Compare with the view of the last evaluation, so changes by ageing are seen too. Returns
        the alerts to send; the stale ones (`Alert.stale`) go to `stale_alerts`, recorded all the same."""
        cid = current.card.customer_id
        fired, states = alert_rules.evaluate(
            self.snapshots.get(cid), current, self.alert_states.get(cid, {}), self.config, trigger_ms
        )
        self.alert_states[cid] = states
        self.snapshots[cid] = current.snapshot()
        sent: list[alert_rules.Alert] = []
        for alert in fired:
            (self.stale_alerts if alert.stale(self.config) else sent).append(alert)
        return tuple(sent)

    # --- reads -------------------------------------------------------------------------

    def customer(self, customer_id: str, as_of_ms: int) -> ScoreCard | None:
        state = self.customers.get(customer_id)
        return None if state is None else score_card(state, as_of_ms, self.config)

    def account(self, account_id: str, as_of_ms: int) -> AccountCard | None:
        states = [s for s in self.customers.values() if s.account_id == account_id]
        return account_card(account_id, states, as_of_ms, self.config) if states else None

    def leaderboard(self, as_of_ms: int, limit: int = 10, bottom: bool = False,
                    segment: str | None = None) -> list[ScoreCard]:
        """Customers ranked by ES (ties: CER, then id), best first, or worst first when `bottom`;
        only `segment`'s customers when one is given."""
        cards = [score_card(s, as_of_ms, self.config, detail=False) for s in self.customers.values()
                 if segment is None or s.segment_in(self.config) == segment]
        cards.sort(key=bottom_key if bottom else top_key)     # the one leaderboard order (scoring.standing)
        return [score_card(self.customers[c.customer_id], as_of_ms, self.config) for c in cards[:limit]]

    def kpis(self, as_of_ms: int) -> BusinessKpis:
        return business_kpis(self.customers.values(), as_of_ms, self.config)
