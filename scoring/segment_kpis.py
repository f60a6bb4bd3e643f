"""KPIs per segment: what one customer's work adds to its segment's aggregates.

A segment's KPIs are the business KPIs over the customers in it now: `business_kpis` over
their states (`segment_states`). They are kept for the segments with a leaderboard of their
own (`scoring.standing.ranked_segments`: those with a scorecard or listed in `kpis.segments`, a
bounded set), with the same aggregates as the whole population (per-bucket totals, standing
sums, last activity and feature use), so a read costs what the global one does: no scan.

A customer that stays in its segment adds its delta there, as it does to the global
aggregates. One that moves (a newer `segment`, a trait named by `scoring.segment_from`, or a
config that tracks other segments) takes everything it holds out of the old segment and puts
it whole into the new one; its bucket counters before the work are its counters after less
what the work added (`scoring.deltas.segment_shares`, with the other rules of a delta).
"""

from __future__ import annotations

from collections.abc import Iterable

from scoring.config import Config
from scoring.standing import ranked_segments
from scoring.state import CustomerState


def segment_states(states: Iterable[CustomerState], segment: str, config: Config) -> list[CustomerState]:
    """The customers in `segment` now: the population its KPIs are computed over."""
    return [s for s in states if s.segment_in(config) == segment]


def kpi_segments(config: Config) -> tuple[str, ...]:
    """The segments with KPIs of their own (sorted): `GET /kpis?segment=`, the trend, the gauges."""
    return tuple(sorted(ranked_segments(config)))
