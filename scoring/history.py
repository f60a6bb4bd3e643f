"""Score history: ES, CER and tier at the end of each bucket over `history.horizon`, and the trend.

Computed from the customer's per-bucket counters (the ones every score reads), by sliding
the scoring window over the buckets once, so a history costs O(buckets x weighted types)
and needs no write of its own: the retention keeps `scoring.window + history.horizon` of
buckets for it. An account's history is its users' (those whose newest account it is),
rolled up per point as `GET /accounts/{id}` rolls them up: ES their mean, CER their sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scoring import formulas
from scoring.config import Config
from scoring.contributions import count_key, value_key, valued_key
from scoring.measures import PENALTY, engagement
from scoring.scores import account_weights, trait_numbers
from scoring.state import CustomerState
from scoring.timeutil import DAY
from scoring.windows import bucket_of

TRENDS_DAYS = (7, 30)      # the change reported beside the points


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    at_ms: int                 # the bucket's last instant (the newest point: as_of itself)
    es: float
    cer: float
    tier: formulas.Tier

    def to_dict(self) -> dict[str, object]:
        return {"at": self.at_ms, "es": round(self.es, 6), "cer": self.cer, "tier": self.tier.value}


@dataclass(frozen=True, slots=True)
class History:
    as_of_ms: int
    points: tuple[HistoryPoint, ...]      # oldest first, one per bucket, the newest at as_of
    changes: dict[str, float | None]      # "7d"/"30d": ES now - ES then (None: before the horizon)

    def to_dict(self) -> dict[str, object]:
        return {"as_of": self.as_of_ms, "points": [p.to_dict() for p in self.points],
                "change": {k: None if v is None else round(v, 6) for k, v in self.changes.items()}}


def _ends(as_of_ms: int, config: Config) -> list[tuple[int, int]]:
    """(bucket, instant) of every point: each bucket's last millisecond, the newest one as_of."""
    bucket_ms = config.scoring.bucket_ms
    last = bucket_of(as_of_ms, bucket_ms)
    first = last - config.history_ms // bucket_ms
    return [(b, as_of_ms if b == last else (b + 1) * bucket_ms - 1) for b in range(first, last + 1)]


def _trend(points: tuple[HistoryPoint, ...], config: Config) -> dict[str, float | None]:
    per_day = DAY // config.scoring.bucket_ms
    changes: dict[str, float | None] = {}
    for days in TRENDS_DAYS:
        back = days * per_day
        changes[f"{days}d"] = points[-1].es - points[-1 - back].es if back < len(points) else None
    return changes


def customer_points(state: CustomerState, as_of_ms: int, config: Config) -> list[tuple[int, float, float]]:
    """(instant, ES, CER) at each point: the scoring window's counts slid one bucket at a time."""
    scoring = config.scorecard(state.segment_in(config))
    width = scoring.window_ms // scoring.bucket_ms
    keys = {count_key(t): t for t in scoring.weights}
    keys.update((count_key(m.type), m.type) for m in scoring.measures if m.kind == PENALTY)
    counts: dict[str, int] = {}
    traits = trait_numbers(state, config)        # only their newest values are kept: every point reads them
    sums: dict[str, list[int]] = {t: [0, 0] for t in scoring.averaged}   # the average measures' value sums
    value_keys = {key: (t, i) for t in scoring.averaged for i, key in enumerate((value_key(t), valued_key(t)))}

    def add(bucket: int, sign: int) -> None:
        for key, amount in state.buckets.get(bucket, {}).items():
            name = keys.get(key)
            if name is not None:
                counts[name] = counts.get(name, 0) + sign * amount
            valued = value_keys.get(key)
            if valued is not None:
                sums[valued[0]][valued[1]] += sign * amount

    ends = _ends(as_of_ms, config)
    for bucket in range(ends[0][0] - width + 1, ends[0][0]):
        add(bucket, 1)
    out = []
    for bucket, at in ends:
        add(bucket, 1)
        values = {t: (total, n) for t, (total, n) in sums.items()}
        out.append((at, engagement(counts, values, scoring, traits),
                    formulas.customer_engagement_rate(counts, scoring.weights)))
        add(bucket - width + 1, -1)
    return out


def customer_history(state: CustomerState, as_of_ms: int, config: Config) -> History:
    sc = config.scorecard(state.segment_in(config))
    points = tuple(HistoryPoint(at, es, cer, formulas.tier(es, sc.tier_excellent, sc.tier_moderate))
                   for at, es, cer in customer_points(state, as_of_ms, config))
    return History(as_of_ms, points, _trend(points, config))


def account_history(states: Iterable[CustomerState], as_of_ms: int, config: Config) -> History:
    """The users' histories rolled up per point: ES their mean (weighted by accounts.weight, with the
    traits as they are now), CER their sum, tier of the mean."""
    sc = config.scoring
    states = list(states)
    users = [customer_points(s, as_of_ms, config) for s in states]
    weights = account_weights([trait_numbers(s, config) for s in states], config)
    points = []
    for i, (at, _) in enumerate(_ends(as_of_ms, config)):
        es = formulas.weighted_mean((u[i][1] for u in users), weights)
        points.append(HistoryPoint(at, es, sum(u[i][2] for u in users),
                                   formulas.tier(es, sc.tier_excellent, sc.tier_moderate)))
    return History(as_of_ms, tuple(points), _trend(tuple(points), config))
