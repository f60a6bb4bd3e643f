"""One customer's standing: what it adds to every cross-customer read, and when that changes.

Leaderboards, the at-risk list and the business KPIs read many customers at once. Rather
than scanning every customer per read, the edge keeps per-customer standings in shared
aggregates (sums and sorted sets) and changes them by the difference between a customer's
old and new standing. That stays exact only if every standing is re-computed whenever it
would change: on each event (the batch), and at :func:`next_change`, the next instant at
which time alone changes it (a bucket leaving a window, a membership period ending, an
inactivity deadline). Between those instants a standing is constant, so sums of stored
standings equal a full recomputation at any instant up to the earliest pending change.

Every quantity here is an integer or an exact float copied from a score card, so sums
are exact and independent of order.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scoring import formulas
from scoring.alerts import RuleState
from scoring.config import Config
from scoring.contributions import JOIN, count_key
from scoring.scores import MAU_WINDOW_MS, ScoreCard, Scored, score_card, shown_traits, was_activated
from scoring.state import CustomerState
from scoring.windows import bucket_of, retained_from_bucket, window_start_bucket

ES_SCALE = 1_000_000   # mean ES is summed in millionths (ES is reported to 6 decimals)

# The integer sums a standing adds to the shared KPI aggregates. Names and order are stable: the
# edge stores them as hash fields, and each stored standing names them by position (changing
# either is a state format change, streams.state.layout.FORMAT).
SUMS = (
    "members", "active_members", "members_at_start", "members_new", "members_lost",
    "cohort", "activated", "customers_in_window", "purchasers", "scored",
    "tier.low", "tier.moderate", "tier.excellent", "below_benchmark", "es_micro", "cer",
)


@dataclass(slots=True)
class Standing:
    """A customer's contribution to the cross-customer reads at one instant."""

    customer_id: str
    es: float
    cer: float
    tier: formulas.Tier
    active: bool
    account_id: str | None
    scored: bool                       # in the score distribution (member now, or events in the score window)
    member_since: int | None           # start of the current membership; None when not a member
    alerts: tuple[str, ...]            # rules whose condition is active (sorted)
    sums: Mapping[str, int]            # contribution to each of SUMS (zeros omitted)
    segment: str | None = None         # its segment, when that segment has a leaderboard of its own
    traits: tuple[tuple[str, object], ...] = ()   # its traits as shown (sorted): batch reads list them

    @property
    def at_risk(self) -> bool:
        """At risk = any alert condition still active (the /at-risk list)."""
        return bool(self.alerts)

    @property
    def below_benchmark(self) -> bool:
        """Counted by the below-benchmark KPI: scored, with CER under scoring.benchmark_cer."""
        return bool(self.sums.get("below_benchmark"))

    def summary(self) -> dict[str, object]:
        """The row a leaderboard or the at-risk list shows."""
        return {"customer_id": self.customer_id, "account_id": self.account_id, "es": round(self.es, 6),
                "tier": self.tier.value, "cer": self.cer, "active": self.active}


def standing(state: CustomerState, alert_states: Mapping[str, RuleState], as_of_ms: int, config: Config,
             card: ScoreCard | None = None) -> Standing:
    """The customer's standing as of `as_of_ms` (the same per-customer terms as business_kpis)."""
    card = card or score_card(state, as_of_ms, config, detail=False)
    bucket_ms = config.scoring.bucket_ms
    kpi_first = window_start_bucket(as_of_ms, config.kpis.window_ms, bucket_ms)
    score_first = window_start_bucket(as_of_ms, config.scoring.window_ms, bucket_ms)
    aer_start = window_start_bucket(as_of_ms, config.aer.window_ms, bucket_ms) * bucket_ms
    in_kpi = in_score = bought = False
    purchase = count_key("purchase")
    for bucket, counters in state.buckets.items():
        if not counters:
            continue
        in_score = in_score or bucket >= score_first
        if bucket >= kpi_first:
            in_kpi = True
            bought = bought or counters.get(purchase, 0) > 0
    member_now = state.is_member(as_of_ms)
    member_then = state.is_member(as_of_ms - config.kpis.retention_period_ms)
    cohort_until = as_of_ms - config.kpis.activation_period_ms
    joins = state.joins_between(cohort_until - config.kpis.retention_period_ms, cohort_until)
    scored = member_now or in_score
    sums = {
        "members": int(member_now),
        "active_members": int(member_now and state.last_aer_ms is not None and state.last_aer_ms >= aer_start),
        "members_at_start": int(member_then),
        "members_new": int(member_now and not member_then),
        "members_lost": int(member_then and not member_now),
        "cohort": len(joins),
        "activated": sum(was_activated(state, j, config, config.kpis.activation_period_ms) for j in joins),
        "customers_in_window": int(in_kpi),
        "purchasers": int(bought),
        "scored": int(scored),
    }
    if scored:
        sums[f"tier.{card.tier.value}"] = 1
        sums["below_benchmark"] = int(card.cer < config.scoring.benchmark_cer)
        sums["es_micro"] = es_micro(card.es)
        sums["cer"] = int(card.cer)
    return Standing(
        customer_id=state.customer_id, es=card.es, cer=card.cer, tier=card.tier, active=card.active,
        account_id=card.account_id, scored=scored, member_since=state.membership_start(as_of_ms),
        alerts=tuple(sorted(rule for rule, s in alert_states.items() if s.active)),
        sums={k: v for k, v in sums.items() if v},
        segment=card.segment if card.segment in ranked_segments(config) else None,
        traits=tuple(shown_traits(state, config).items()) if state.traits else (),
    )


def ranked_segments(config: Config) -> frozenset[str]:
    """Segments with a leaderboard of their own: those with a scorecard or listed in kpis.segments
    (a bounded set: a producer cannot create sorted sets by inventing segments)."""
    return frozenset(config.scorecards) | frozenset(config.kpis.segments)


def es_micro(es: float) -> int:
    return round(es * ES_SCALE)


def sum_difference(old: Standing | None, new: Standing | None) -> dict[str, int]:
    """What to add to the shared sums when a customer's standing goes from `old` to `new`."""
    delta: dict[str, int] = {}
    for source, sign in ((old, -1), (new, 1)):
        if source is not None:
            for key, value in source.sums.items():
                delta[key] = delta.get(key, 0) + sign * value
    return {k: v for k, v in delta.items() if v}


def next_change(state: CustomerState, as_of_ms: int, config: Config) -> int | None:
    """The first instant after `as_of_ms` at which time alone may change the customer's
    standing, alert view or rule outcomes, or its stored buckets (eviction); None when nothing will.

    Windows are whole buckets and count every bucket from their first on (later ones too),
    so time changes a window only when a non-empty bucket leaves it: at
    :func:`window_exit` of that bucket for the score window, the score-drop reference
    (the score window one drop-window ago) and the KPI window; the newest activity leaves
    the AER and MAU windows the same way. A bucket is evicted once it is older than the
    retention. Membership, cohort, activation and inactivity deadlines are exact instants.
    Anything else would make a customer due at every bucket boundary for as long as it
    keeps buckets: with short buckets, every customer at every boundary.
    """
    bucket_ms = config.scoring.bucket_ms
    drop_ms = config.alerts.score_drop_window_ms
    # per window (score, drop reference, KPI): the oldest non-empty bucket still inside it
    # leaves first; the window's first bucket at `as_of_ms` tells which are still inside
    windows = ((config.scoring.window_ms, 0), (config.scoring.window_ms, drop_ms), (config.kpis.window_ms, 0))
    firsts = [window_start_bucket(as_of_ms - lag_ms, window_ms, bucket_ms) for window_ms, lag_ms in windows]
    leaving: list[int | None] = [None] * len(windows)
    retained = retained_from_bucket(as_of_ms, config)
    oldest = None                                                       # the next bucket to evict
    for bucket, counters in state.buckets.items():
        if retained <= bucket and (oldest is None or bucket < oldest):
            oldest = bucket
        if counters:
            for i, first in enumerate(firsts):
                if first <= bucket and (leaving[i] is None or bucket < leaving[i]):
                    leaving[i] = bucket
    candidates = [window_exit(bucket, window_ms, bucket_ms) + lag_ms
                  for bucket, (window_ms, lag_ms) in zip(leaving, windows) if bucket is not None]
    for session in state.sessions.values():                             # evicted with its first bucket
        anchor = bucket_of(session.anchor_ms, bucket_ms)
        if retained <= anchor and (oldest is None or anchor < oldest):
            oldest = anchor
    if oldest is not None:
        candidates.append(oldest * bucket_ms + config.retention_ms)      # evicted from then on
    for last, window_ms in ((state.last_aer_ms, config.aer.window_ms), (state.last_active_ms, MAU_WINDOW_MS)):
        if last is not None:
            candidates.append(window_exit(bucket_of(last, bucket_ms), window_ms, bucket_ms))
    alerts = config.alerts
    offsets = [0, config.kpis.retention_period_ms, config.kpis.activation_period_ms,
               config.kpis.activation_period_ms + config.kpis.retention_period_ms, config.retention_ms - bucket_ms]
    if alerts.activation_ms is not None:
        offsets.append(alerts.activation_ms)
    for ts, kind in state.membership:
        for offset in offsets if kind == JOIN else offsets[:2]:
            candidates.append(ts + offset)
    if alerts.inactivity_ms is not None:
        joined = state.membership_start(as_of_ms)
        for since in (state.last_active_ms, joined):
            if since is not None:
                candidates.append(since + alerts.inactivity_ms)
    later = [t for t in candidates if t > as_of_ms]
    return min(later) if later else None


def window_exit(bucket: int, window_ms: int, bucket_ms: int) -> int:
    """The first instant whose window of `window_ms` no longer holds `bucket` (see windows)."""
    return (bucket + window_ms // bucket_ms) * bucket_ms


def activity_counted_from(as_of_ms: int, config: Config) -> int:
    """The oldest last-activity time any read at `as_of_ms` or later still counts (DAU/WAU/MAU,
    the AER window, feature usage over the KPI window): older entries may be dropped."""
    longest = max(MAU_WINDOW_MS, config.kpis.window_ms, config.aer.window_ms)
    return window_start_bucket(as_of_ms, longest, config.scoring.bucket_ms) * config.scoring.bucket_ms


# --- orders over customers: the one home of leaderboard and at-risk ordering --------------

def _ordered_bits(value: float) -> int:
    """An integer that sorts like the non-negative float `value`."""
    return struct.unpack(">Q", struct.pack(">d", value + 0.0))[0]


def top_key(s: Scored) -> str:
    """Sorts ascending as the top leaderboard: ES descending, then CER descending, then id."""
    mask = (1 << 64) - 1
    return f"{mask - _ordered_bits(s.es):016x}{mask - _ordered_bits(s.cer):016x}{s.customer_id}"


def bottom_key(s: Scored) -> str:
    """Sorts ascending as the bottom leaderboard: ES, then CER, then id, all ascending."""
    return f"{_ordered_bits(s.es):016x}{_ordered_bits(s.cer):016x}{s.customer_id}"


def risk_key(s: Scored) -> str:
    """Sorts ascending as the at-risk list: lowest ES first, then id."""
    return f"{_ordered_bits(s.es):016x}{s.customer_id}"


ORDER_KEY_ID_OFFSET = {"top": 32, "bottom": 32, "risk": 16}   # where the customer id starts in a key


def leaderboard(standings: Iterable[Standing], limit: int, bottom: bool = False,
                segment: str | None = None) -> list[Standing]:
    """Customers ranked by ES (ties: CER, then id), best first, or worst first when `bottom`;
    only those of `segment` when one is given."""
    chosen = (s for s in standings if segment is None or s.segment == segment)
    return sorted(chosen, key=bottom_key if bottom else top_key)[:limit]


def at_risk(standings: Iterable[Standing], limit: int) -> tuple[list[Standing], int]:
    """Customers with an active alert condition, lowest ES first; and how many there are."""
    rows = sorted((s for s in standings if s.at_risk), key=risk_key)
    return rows[:limit], len(rows)
