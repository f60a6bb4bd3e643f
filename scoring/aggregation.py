"""The arithmetic of the shared KPI aggregates, in one home.

The edge keeps them in Redis (per-shard sums, per-bucket totals, sorted sets of last activity)
and `scoring.deltas.AggregateBook` keeps them in memory; both add a customer's delta with
`add_delta` and read with the same `ReadPlan` and `assemble`, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scoring.business import Aggregates
from scoring.config import Config
from scoring.contributions import ANY_FEATURE
from scoring.scores import MAU_WINDOW_MS
from scoring.state import BOUNCES, SESSIONS
from scoring.timeutil import DAY
from scoring.windows import bucket_of, window_start_bucket, window_start_ms


@dataclass(frozen=True)
class ReadPlan:
    """What the KPIs at one instant read: the buckets whose totals are summed (the KPI window, up to
    the newest bucket an event may have), where each activity window starts, the features counted."""

    buckets: range
    active_since: Mapping[str, int]       # "dau", "wau", "mau", "kpi" -> first epoch ms counted
    features: tuple[str, ...]


def read_plan(as_of_ms: int, config: Config) -> ReadPlan:
    bucket_ms = config.scoring.bucket_ms
    first = window_start_bucket(as_of_ms, config.kpis.window_ms, bucket_ms)
    last = bucket_of(as_of_ms + config.time.max_future_skew_ms, bucket_ms) + 1
    since = {"dau": window_start_ms(as_of_ms, DAY, bucket_ms), "wau": window_start_ms(as_of_ms, 7 * DAY, bucket_ms),
             "mau": window_start_ms(as_of_ms, MAU_WINDOW_MS, bucket_ms), "kpi": first * bucket_ms}
    return ReadPlan(range(first, last + 1), since, (ANY_FEATURE, *config.kpis.features))


def add_into(total: dict[str, int], amounts: Mapping[str, int]) -> None:
    for key, amount in amounts.items():
        total[key] = total.get(key, 0) + amount


def add_delta(buckets: dict[int, dict[str, int]], sums: dict[str, int],
              counters: Mapping[int, Mapping[str, int]], sum_changes: Mapping[str, int]) -> None:
    """A customer's changes added to per-bucket totals and standing sums."""
    for bucket, amounts in counters.items():
        add_into(buckets.setdefault(bucket, {}), amounts)
    add_into(sums, sum_changes)


def assemble(sums: Mapping[str, int], totals: Mapping[str, int], active: Mapping[str, int],
             feature_users: Mapping[str, int], median_es: float) -> Aggregates:
    """The aggregates from what was read: the window's totals (sessions and bounces apart, zeros
    dropped) and the active counts per window of `ReadPlan.active_since`."""
    counters = {k: v for k, v in totals.items() if k not in (SESSIONS, BOUNCES) and v}
    return Aggregates(sums=dict(sums), totals=counters, sessions=totals.get(SESSIONS, 0),
                      bounces=totals.get(BOUNCES, 0), dau=active["dau"], wau=active["wau"], mau=active["mau"],
                      active_in_kpi_window=active["kpi"], feature_users=dict(feature_users), median_es=median_es)
