"""Per-customer and per-account scores, derived from state at read time (docs/scores-and-kpis.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from scoring import formulas
from scoring.config import Config, ScoringConfig
from scoring.state import COUNT_PREFIX, CustomerState
from scoring.timeutil import DAY
from scoring.windows import bucket_age, window_start_bucket, window_start_ms

MAU_WINDOW_MS = 30 * DAY


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
        }


def breakdown(counts: Mapping[str, int], scoring: ScoringConfig) -> tuple[TypeScore, ...]:
    rows = []
    for name, weight in sorted(scoring.weights.items()):
        n = counts.get(name, 0)
        component = formulas.engagement_component(n, scoring.targets[name])
        rows.append(TypeScore(name, n, weight, n * weight, component, weight * component / scoring.total_weight))
    return tuple(rows)


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
    card = config.scorecard(state.segment_name)          # its segment's weights, targets, tiers
    if counts is None:
        counts = dict(state.counts_from(window_start_bucket(as_of_ms, config.scoring.window_ms,
                                                            config.scoring.bucket_ms)))
    cer = formulas.customer_engagement_rate(counts, card.weights)
    es = formulas.engagement_score(counts, card.weights, card.targets, card.total_weight)
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
        segment=state.segment_name,
        breakdown=breakdown(counts, card) if detail else (),
        counts=counts,
    )


@dataclass(frozen=True, slots=True)
class AccountCard:
    """B2B roll-up: CER is the sum over the account's users, ES their mean."""

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
            **({} if self.breakdown is None else {"breakdown": [t.to_dict() for t in self.breakdown]}),
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


def account_summary(account_id: str, users: Iterable[Scored], as_of_ms: int, scoring: ScoringConfig) -> AccountCard:
    """The account roll-up without its per-type breakdown (batch lookups read it from the users'
    stored standings, which carry no counts)."""
    users = list(users)
    tiers = {t.value: 0 for t in formulas.Tier}
    for user in users:
        tiers[user.tier.value] += 1
    cer = sum(u.cer for u in users)
    es = formulas.mean(u.es for u in users)
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


def account_card(account_id: str, cards: Iterable[ScoreCard], as_of_ms: int, scoring: ScoringConfig) -> AccountCard:
    """Roll up the score cards of an account's users (every user whose newest account_id is it)."""
    cards = list(cards)
    rows = []
    for name, weight in sorted(scoring.weights.items()):
        count = sum(c.counts.get(name, 0) for c in cards)
        component = formulas.mean(formulas.engagement_component(c.counts.get(name, 0), scoring.targets[name]) for c in cards)
        rows.append(TypeScore(name, count, weight, count * weight, component, weight * component / scoring.total_weight))
    return replace(account_summary(account_id, cards, as_of_ms, scoring), breakdown=tuple(rows))

