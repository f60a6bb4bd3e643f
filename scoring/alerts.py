"""Per-customer alert rules (docs/alerts.md), pure: previous and current view in, alerts out.

Each rule keeps a small :class:`RuleState`; a rule fires when its condition becomes
true and stays silent until the condition has cleared (hysteresis), so an operator
gets one alert per episode. The rule states are the only memory the rules need, and
the edge persists them so hysteresis survives restarts.

Inactivity and activation are conditions of time passing, not of events: the edge
evaluates them from a periodic sweep as well as on every update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from scoring import formulas
from scoring.config import Config, ScoringConfig
from scoring.contributions import count_key
from scoring.explain import Explanation, explain, explain_silence
from scoring.measures import PENALTY, engagement, value_totals
from scoring.scores import (ScoreCard, breakdown, score_card, shown_traits, trait_numbers, was_activated,
                            window_values)
from scoring.state import CustomerState
from scoring.windows import bucket_of, window_start_bucket


class Rule(StrEnum):
    TIER_DOWNGRADE = "tier_downgrade"
    SCORE_DROP = "score_drop"
    INACTIVE = "inactive"
    NOT_ACTIVATED = "not_activated"


SILENCE_RULES = frozenset({Rule.INACTIVE, Rule.NOT_ACTIVATED})   # alerts about silence, not a score's movement


@dataclass(slots=True)
class View:
    """What the rules look at for one customer at one moment."""

    card: ScoreCard
    es_reference: float            # ES as of (as_of - alerts.score_drop_window)
    joined_ms: int | None          # start of the current membership; None when not a member
    activated: bool                # activity within alerts.activation after joining (True if not a new member)
    state: CustomerState           # what an alert's explanation is computed from, if one fires

    @property
    def tier(self) -> formulas.Tier:
        return self.card.tier

    def snapshot(self) -> Snapshot:
        return Snapshot(self.card.tier, self.card.es)


@dataclass(slots=True)
class Snapshot:
    """What the rules remember of a customer's last evaluation (small, persisted by the edge)."""

    tier: formulas.Tier
    es: float


@dataclass(slots=True)
class RuleState:
    active: bool = False
    baseline: str | None = None    # tier_downgrade: tier before the episode; not_activated: membership start
    level: str | None = None       # tier_downgrade: lowest tier alerted in the episode


AlertStates = Mapping[str, RuleState]


@dataclass(frozen=True, slots=True)
class Alert:
    rule: Rule
    customer_id: str
    account_id: str | None
    as_of_ms: int
    before: dict[str, object]
    after: dict[str, object]
    breakdown: tuple[dict[str, object], ...]
    why: Explanation                      # the reasons, as data and as one sentence (scoring.explain)
    began_ms: int = 0                     # when its condition began (see `evaluate`)
    measures: tuple[dict[str, object], ...] = ()   # the scorecard's measures, beside the breakdown
    traits: Mapping[str, object] = field(default_factory=dict)   # the customer's traits: its owner, plan ...

    def stale(self, config: Config) -> bool:
        """Its condition began more than `alerts.max_age` before it was evaluated: a backfill, a
        replay or a long outage found it, not the present. Recorded (the rule's memory), not sent."""
        max_age = config.alerts.max_age_ms
        return max_age is not None and self.as_of_ms - self.began_ms > max_age

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule.value,
            "customer_id": self.customer_id,
            "account_id": self.account_id,
            "as_of": self.as_of_ms,
            "before": self.before,
            "after": self.after,
            "breakdown": list(self.breakdown),
            "measures": list(self.measures),
            "traits": dict(self.traits),
            "why": self.why.to_dict(),
        }


def view(state: CustomerState, as_of_ms: int, config: Config) -> View:
    window_ms, bucket_ms = config.scoring.window_ms, config.scoring.bucket_ms
    now = dict(state.counts_from(window_start_bucket(as_of_ms, window_ms, bucket_ms)))
    reference_first = window_start_bucket(as_of_ms - config.alerts.score_drop_window_ms, window_ms, bucket_ms)
    reference = state.counts_from(reference_first, slot=1)
    card = score_card(state, as_of_ms, config, detail=False, counts=now)
    joined = state.membership_start(as_of_ms)
    activation = config.alerts.activation_ms
    # Only a membership that began inside the retention horizon is "new": for older ones
    # the buckets that would show activation are gone, and the question no longer applies.
    new_member = joined is not None and joined > as_of_ms - config.retention_ms + config.scoring.bucket_ms
    scorecard = config.scorecard(state.segment_in(config))
    return View(
        card=card,
        es_reference=formulas.engagement_score(reference, scorecard.weights, scorecard.targets,
                                               scorecard.total_weight) if not scorecard.measures else
        _reference_es(state, reference, reference_first,
                      bucket_of(as_of_ms - config.alerts.score_drop_window_ms, bucket_ms), scorecard,
                      trait_numbers(state, config)),
        joined_ms=joined,
        activated=not new_member or activation is None or was_activated(state, joined, config, activation),
        state=state,
    )


def _reference_es(state: CustomerState, counts: Mapping[str, int], first: int, then: int,
                  scorecard: ScoringConfig, traits: Mapping[str, float]) -> float:
    """ES to compare with for a score drop: the weighted counts over the window one drop-window ago
    stretched to now (counts only leave a window as it slides), and the measures as they read one
    drop-window ago (new answers and tickets can lower them), over the buckets first..then; traits
    as they are (only their newest values are kept)."""
    counts = dict(counts)
    for measure in scorecard.measures:
        if measure.kind == PENALTY:
            counts[measure.type] = sum(c.get(count_key(measure.type), 0) for b, c in state.buckets.items()
                                       if first <= b <= then)
    return engagement(counts, value_totals(state.buckets, first, scorecard.averaged, then), scorecard, traits)


def evaluate(
    previous: Snapshot | None, current: View, states: AlertStates, config: Config, trigger_ms: int | None = None
) -> tuple[list[Alert], dict[str, RuleState]]:
    """Alerts that fire now, and the rule states to keep for next time.

    `previous` is the snapshot of the customer's last evaluation (None the first time),
    so a tier lost because counts aged out of the window is caught by the next update
    or sweep, whichever comes first.

    Each alert says when its condition began: for inactivity and activation, the deadline that
    passed; for a score rule, the newest event time of the events that moved the score
    (`trigger_ms`), or the evaluation itself when time alone moved it (a sweep).
    """
    out: dict[str, RuleState] = dict(states)
    fired: list[Alert] = []
    cfg = config.alerts

    built: list[tuple[tuple[dict[str, object], ...], tuple[dict[str, object], ...], dict[str, object]]] = []
    # the breakdown, measures and traits, built once if anything fires
    whys: dict[object, Explanation] = {}              # each kind of explanation, built once if needed
    card = current.card
    now = {"tier": card.tier.value, "es": card.es}
    last = now if previous is None else {"tier": previous.tier.value, "es": previous.es}

    def alert(rule: Rule, before: dict[str, object], after: dict[str, object], began_ms: int | None = None) -> None:
        """Every alert carries the tier and ES before (the last evaluation; a score drop: its
        reference) and now, with its rule's own facts beside them."""
        if not built:
            scorecard = config.scorecard(card.segment)
            first = window_start_bucket(card.as_of_ms, config.scoring.window_ms, config.scoring.bucket_ms)
            types, measures = breakdown(card.counts, scorecard, window_values(current.state, first, scorecard),
                                        trait_numbers(current.state, config))
            built.append((tuple(t.to_dict() for t in types), tuple(m.to_dict() for m in measures),
                          shown_traits(current.state, config)))
        rows, measure_rows, traits = built[0]
        # an alert's explanation speaks to its rule: silence for inactivity and activation, the score's
        # movement for the others
        kind = explain_silence if rule in SILENCE_RULES else explain
        if kind not in whys:
            whys[kind] = kind(current.state, card.as_of_ms, config, card)
        why = whys[kind]
        began = began_ms if began_ms is not None else (trigger_ms if trigger_ms is not None else card.as_of_ms)
        fired.append(Alert(rule, card.customer_id, card.account_id, card.as_of_ms, {**last, **before},
                           {**now, **after}, rows, why, min(began, card.as_of_ms), measure_rows, traits))

    # tier downgrade: fires on a drop below the previous tier, again on a further drop,
    # and re-arms once the tier is back at the tier the episode started from.
    if cfg.tier_downgrade:
        state = out.get(Rule.TIER_DOWNGRADE, RuleState())
        if state.active and current.tier.rank >= formulas.Tier(state.baseline).rank:
            state = RuleState()
        if previous is not None and current.tier.rank < previous.tier.rank:
            if not state.active or current.tier.rank < formulas.Tier(state.level).rank:
                alert(Rule.TIER_DOWNGRADE,
                      {"tier": previous.tier.value, "es": previous.es},
                      {"tier": current.tier.value, "es": current.card.es})
                baseline = state.baseline if state.active else previous.tier.value
                state = RuleState(True, baseline, current.tier.value)
        out[Rule.TIER_DOWNGRADE] = state

    # score drop: ES fell by more than X % against ES one drop-window ago.
    if cfg.score_drop_percent > 0:
        state = out.get(Rule.SCORE_DROP, RuleState())
        reference = current.es_reference
        dropping = reference >= cfg.score_drop_min_reference and reference > 0 and (
            100.0 * (reference - current.card.es) / reference > cfg.score_drop_percent
        )
        if dropping and not state.active:
            scorecard = config.scorecard(card.segment)
            alert(Rule.SCORE_DROP, {"tier": formulas.tier(reference, scorecard.tier_excellent,
                                                          scorecard.tier_moderate).value, "es": reference},
                  {"drop_percent": 100.0 * (reference - current.card.es) / reference})
        out[Rule.SCORE_DROP] = state if state.active == dropping else replace(state, active=dropping)

    # inactivity: a member with no activity for alerts.inactivity (since joining if never active).
    if cfg.inactivity_ms is not None:
        state = out.get(Rule.INACTIVE, RuleState())
        since = _newest(current.card.last_active_ms, current.joined_ms)
        inactive = current.joined_ms is not None and since is not None and (
            current.card.as_of_ms - since >= cfg.inactivity_ms
        )
        if inactive and not state.active:
            alert(Rule.INACTIVE, {"last_active": current.card.last_active_ms},
                  {"inactive_ms": current.card.as_of_ms - since}, since + cfg.inactivity_ms)
        out[Rule.INACTIVE] = state if state.active == inactive else replace(state, active=inactive)

    # activation: a new member with no activity within alerts.activation of joining; once per membership.
    if cfg.activation_ms is not None:
        state = out.get(Rule.NOT_ACTIVATED, RuleState())
        joined = current.joined_ms
        overdue = joined is not None and not current.activated and current.card.as_of_ms >= joined + cfg.activation_ms
        episode = str(joined)
        if overdue and not (state.active and state.baseline == episode):
            alert(Rule.NOT_ACTIVATED, {"joined": joined}, {"activated": False}, joined + cfg.activation_ms)
            state = RuleState(True, episode)
        elif not overdue and state.active:
            state = RuleState()
        out[Rule.NOT_ACTIVATED] = state

    return fired, out


def _newest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
