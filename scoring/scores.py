"""Per-customer and per-account scores, derived from state at read time (docs/scores-and-kpis.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from scoring import formulas
from scoring.config import Config, ScoringConfig
from scoring.measures import NO_TRAITS, NO_VALUES, MeasureScore, engagement, measure_scores, value_totals
from scoring.state import COUNT_PREFIX, CustomerState
from scoring.traits import NUMBER, TraitValue, shown
from scoring.timeutil import DAY
from scoring.windows import bucket_age, window_start_bucket, window_start_ms

MAU_WINDOW_MS = 30 * DAY
NO_SHOWN_TRAITS: dict[str, TraitValue] = {}    # shared by every card without traits (never changed): no dict each


@dataclass(slots=True)
class TypeScore:
    """Why a score is what it is: one event type's share of CER and ES."""

    type: str
    count: int
    weight: int
    cer: float            # n * w
    component: float      # m_k = 100 * min(1, n / target)
    es: float             # w * m_k / sum(w): this type's points of ES

    def to_dict(self) -> dict[str, float | int | str]:
        return {"type": self.type, "count": self.count, "weight": self.weight, "cer": self.cer,
                "component": round(self.component, 6), "es": round(self.es, 6)}


@dataclass(slots=True)
class ScoreCard:
    customer_id: str
    as_of_ms: int
    cer: float
    es: float
    tier: formulas.Tier
    below_benchmark: bool
    decayed: float | None
    active: bool
    member: bool
    last_event_ms: int | None
    last_active_ms: int | None
    account_id: str | None
    segment: str | None
    breakdown: tuple[TypeScore, ...]
    counts: dict[str, int]          # event counts per type over the scoring window
    measures: tuple[MeasureScore, ...] = ()   # the scorecard's measures (with the breakdown)
    traits: dict[str, TraitValue] = field(default_factory=lambda: NO_SHOWN_TRAITS)   # its allowed traits, as shown

    def to_dict(self) -> dict[str, object]:
        return {
            "customer_id": self.customer_id,
            "as_of": self.as_of_ms,
            "cer": self.cer,
            "es": round(self.es, 6),
            "tier": self.tier.value,
            "below_benchmark": self.below_benchmark,
            "decayed": None if self.decayed is None else round(self.decayed, 6),
            "active": self.active,
            "member": self.member,
            "last_event": self.last_event_ms,
            "last_active": self.last_active_ms,
            "account_id": self.account_id,
            "segment": self.segment,
            "breakdown": [t.to_dict() for t in self.breakdown],
            "measures": [m.to_dict() for m in self.measures],
            "traits": self.traits,
        }


def breakdown(counts: Mapping[str, int], scoring: ScoringConfig, values: Mapping[str, tuple[int, int]] = NO_VALUES,
              traits: Mapping[str, float] = NO_TRAITS) -> tuple[tuple[TypeScore, ...], tuple[MeasureScore, ...]]:
    """Each weighted type's and each measure's share of ES (and the types' of CER)."""
    measures, total = measure_scores(counts, values, scoring, traits)
    rows = []
    for name, weight in sorted(scoring.weights.items()):
        n = counts.get(name, 0)
        component = formulas.engagement_component(n, scoring.targets[name])
        rows.append(TypeScore(name, n, weight, n * weight, component, weight * component / total if total else 0.0))
    return tuple(rows), measures


def trait_numbers(state: CustomerState, config: Config) -> Mapping[str, float]:
    """The customer's number traits (what a trait measure reads)."""
    if not state.traits:
        return NO_TRAITS
    return {name: value for name, value in state.trait_values().items()
            if config.traits.get(name) == NUMBER and not isinstance(value, str)}


def account_weights(users_traits: Iterable[Mapping[str, object]], config: Config) -> list[float] | None:
    """Each user's weight in its account's roll-up, in the users' order: None when each counts once
    (accounts.weight = "users"); else its weight trait's value, 0 when it has none or it is not
    above 0 (such a user counts for nothing, unless no user of the account has one: then each counts once)."""
    name = config.account_weight
    if name is None:
        return None
    return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0.0
            for v in (traits.get(name) for traits in users_traits)]


def account_traits(states: Iterable[CustomerState], config: Config) -> dict[str, TraitValue]:
    """An account's traits, as the API shows them: per allowed trait, what the newest event that set
    it on any of its users said (by event time, then event id). A Segment `group` call's traits are
    kept on the user who sent it, so the account's newest group call speaks for the account."""
    newest: dict[str, tuple[int, str, TraitValue]] = {}
    for state in states:
        for name, entry in (state.traits or {}).items():
            if name in config.traits and (name not in newest or entry[:2] > newest[name][:2]):
                newest[name] = entry
    return {name: shown(config.traits[name], entry[2]) for name, entry in sorted(newest.items())
            if entry[2] is not None}


def shown_traits(state: CustomerState, config: Config) -> dict[str, TraitValue]:
    """The customer's traits the config allows, as the API shows them."""
    return {name: shown(config.traits[name], value) for name, value in sorted(state.trait_values().items())
            if name in config.traits}


def window_values(state: CustomerState, first: int, scoring: ScoringConfig) -> Mapping[str, tuple[int, int]]:
    """The value sums the scorecard's average measures read, over the buckets from `first` on."""
    return value_totals(state.buckets, first, scoring.averaged) if scoring.averaged else NO_VALUES


def decayed_score(state: CustomerState, as_of_ms: int, scoring: ScoringConfig) -> float | None:
    """A recency-weighted CER: the scoring window's buckets, each halved per half-life of age.

    Bounded by the scoring window (like CER), so it depends on no other setting and
    evicting older buckets never changes it. None when decay is off.
    """
    if scoring.decay_half_life_ms is None:
        return None
    oldest = window_start_bucket(as_of_ms, scoring.window_ms, scoring.bucket_ms)
    weighted_by_age = []
    for bucket, counters in state.buckets.items():
        if bucket < oldest:
            continue
        weighted = sum(
            amount * scoring.weights[key[2:]]
            for key, amount in counters.items()
            if key.startswith(COUNT_PREFIX) and key[2:] in scoring.weights
        )
        if weighted:
            weighted_by_age.append((weighted, bucket_age(bucket, as_of_ms, scoring.bucket_ms)))
    return formulas.decayed_engagement(weighted_by_age, scoring.decay_half_life_ms)


def is_active(state: CustomerState, as_of_ms: int, config: Config) -> bool:
    """Active = an activity-type event inside the 30-day (MAU) window."""
    return state.last_active_ms is not None and state.last_active_ms >= window_start_ms(
        as_of_ms, MAU_WINDOW_MS, config.scoring.bucket_ms
    )


def was_activated(state: CustomerState, joined_ms: int, config: Config, within_ms: int) -> bool:
    """An activity-type event in the buckets from joining through `within_ms` after it."""
    first = joined_ms // config.scoring.bucket_ms
    last = (joined_ms + within_ms - 1) // config.scoring.bucket_ms
    keys = [COUNT_PREFIX + t for t in config.activity_types]
    for bucket in range(first, last + 1):
        counters = state.buckets.get(bucket)
        if counters and any(counters.get(k) for k in keys):
            return True
    return False


def score_card(state: CustomerState, as_of_ms: int, config: Config, detail: bool = True,
               counts: dict[str, int] | None = None) -> ScoreCard:
    """The customer's scores as of `as_of_ms`; without `detail`, no breakdown and no decayed score.

    `counts` are the window's counts when the caller has them already (a copy of
    `CustomerState.counts_from`, which keeps them running).
    """
    card = config.scorecard(state.segment_in(config))          # its segment's weights, targets, tiers, measures
    first = window_start_bucket(as_of_ms, config.scoring.window_ms, config.scoring.bucket_ms) \
        if counts is None or card.measures else 0
    if counts is None:
        counts = dict(state.counts_from(first))
    cer = formulas.customer_engagement_rate(counts, card.weights)
    if card.measures:
        values, numbers = window_values(state, first, card), trait_numbers(state, config)
        es = engagement(counts, values, card, numbers)
    else:   # the seed's formula alone (the common case on the per-event path: no call in between)
        values, numbers = NO_VALUES, NO_TRAITS
        es = formulas.engagement_score(counts, card.weights, card.targets, card.total_weight)
    rows, measures = breakdown(counts, card, values, numbers) if detail else ((), ())
    return ScoreCard(
        customer_id=state.customer_id,
        as_of_ms=as_of_ms,
        cer=cer,
        es=es,
        tier=formulas.tier(es, card.tier_excellent, card.tier_moderate),
        below_benchmark=cer < config.scoring.benchmark_cer,
        decayed=decayed_score(state, as_of_ms, card) if detail else None,
        active=is_active(state, as_of_ms, config),
        member=state.is_member(as_of_ms),
        last_event_ms=state.watermark_ms,
        last_active_ms=state.last_active_ms,
        account_id=state.account_id,
        segment=state.segment_in(config),
        breakdown=rows,
        counts=counts,
        measures=measures,
        traits=shown_traits(state, config) if detail and state.traits else NO_SHOWN_TRAITS,
    )


@dataclass(frozen=True, slots=True)
class AccountCard:
    """B2B roll-up: CER is the sum over the account's users, ES their mean (weighted by accounts.weight)."""

    account_id: str
    as_of_ms: int
    users: int
    active_users: int
    cer: float
    es: float
    tier: formulas.Tier
    below_benchmark: bool
    tiers: dict[str, int]
    breakdown: tuple[TypeScore, ...] | None   # counts and CER summed over users; m_k and ES points their
                                               # mean (None: a summary, read from stored standings)
    measures: tuple[MeasureScore, ...] = ()
    traits: Mapping[str, TraitValue] = field(default_factory=dict)   # the account's (account_traits); with breakdown

    def to_dict(self) -> dict[str, object]:
        return {
            "account_id": self.account_id,
            "as_of": self.as_of_ms,
            "users": self.users,
            "active_users": self.active_users,
            "cer": self.cer,
            "es": round(self.es, 6),
            "tier": self.tier.value,
            "below_benchmark": self.below_benchmark,
            "tiers": self.tiers,
            **({} if self.breakdown is None else {"breakdown": [t.to_dict() for t in self.breakdown],
                                                  "measures": [m.to_dict() for m in self.measures],
                                                  "traits": dict(self.traits)}),
        }


class Scored(Protocol):
    """A customer's score as the cross-customer reads use it: a ScoreCard (the reference Scorer)
    or a stored Standing (the edge). Orders (leaderboards, at-risk) and account roll-ups take it."""

    @property
    def customer_id(self) -> str: ...
    @property
    def es(self) -> float: ...
    @property
    def cer(self) -> float: ...
    @property
    def tier(self) -> formulas.Tier: ...
    @property
    def active(self) -> bool: ...


def account_summary(account_id: str, users: Iterable[Scored], as_of_ms: int, scoring: ScoringConfig,
                    weights: list[float] | None = None) -> AccountCard:
    """The account roll-up without its per-type breakdown (batch lookups read it from the users'
    stored standings, which carry no counts). ES is the users' mean, weighted by `weights`
    (`account_weights`) when given."""
    users = list(users)
    tiers = {t.value: 0 for t in formulas.Tier}
    for user in users:
        tiers[user.tier.value] += 1
    cer = sum(u.cer for u in users)
    es = formulas.weighted_mean((u.es for u in users), weights)
    return AccountCard(
        account_id=account_id,
        as_of_ms=as_of_ms,
        users=len(users),
        active_users=sum(1 for u in users if u.active),
        cer=cer,
        es=es,
        tier=formulas.tier(es, scoring.tier_excellent, scoring.tier_moderate),
        below_benchmark=cer < scoring.benchmark_cer * max(len(users), 1),
        tiers=tiers,
        breakdown=None,
    )


def account_card(account_id: str, states: Iterable[CustomerState], as_of_ms: int, config: Config) -> AccountCard:
    """Roll up an account's users (every user whose newest account_id is it): per type, counts and
    CER summed, m_k and ES points their mean; per measure, readings and scores the mean of the
    users that have one, ES points the mean over all (by the default scorecard). Every mean is
    weighted by accounts.weight when it names a trait (`account_weights`), so the points still add
    up to the account's ES."""
    states = list(states)
    scoring = config.scoring
    first = window_start_bucket(as_of_ms, scoring.window_ms, scoring.bucket_ms)
    users = [(score_card(s, as_of_ms, config, detail=False), window_values(s, first, scoring),
              trait_numbers(s, config)) for s in states]
    cards = [card for card, _, _ in users]
    weights = account_weights([numbers for _, _, numbers in users], config)
    scored = [measure_scores(card.counts, values, scoring, numbers) for card, values, numbers in users]

    def among(values: list[float | None]) -> float | None:
        """The (weighted) mean over the users that have a value; None when none has."""
        have = [j for j, v in enumerate(values) if v is not None]
        return formulas.weighted_mean([values[j] for j in have],  # type: ignore[misc]
                                      None if weights is None else [weights[j] for j in have]) if have else None

    rows = []
    for name, weight in sorted(scoring.weights.items()):
        count = sum(c.counts.get(name, 0) for c in cards)
        components = [formulas.engagement_component(c.counts.get(name, 0), scoring.targets[name]) for c in cards]
        component = formulas.weighted_mean(components, weights)
        points = (weight * component / scoring.total_weight if not scoring.measures
                  else formulas.weighted_mean([weight * m / total if total else 0.0
                                               for m, (_, total) in zip(components, scored)], weights))
        rows.append(TypeScore(name, count, weight, count * weight, component, points))
    measures = []
    for i, measure in enumerate(scoring.measures):
        own = [user_measures[i] for user_measures, _ in scored]
        measures.append(MeasureScore(measure.name, measure.kind, measure.type, among([m.reading for m in own]),
                                     measure.weight, among([m.score for m in own]),
                                     formulas.weighted_mean([m.es for m in own], weights)))
    return replace(account_summary(account_id, cards, as_of_ms, scoring, weights), breakdown=tuple(rows),
                   measures=tuple(measures), traits=account_traits(states, config))
