"""Scorecard measures: the factors of ES that are not a weighted count (docs/scorecards.md).

ES is the weighted mean of a scorecard's factors, each scored 0-100. A weighted count
([weights] and [targets]) scores `100 * min(1, n / target)`, as it always has; a measure
([measures.<name>]) scores one of:

* a **penalty**: a count where more is worse, 100 at none, falling linearly to 0 at `target`;
* an **average**: the mean `value` of a type's events in the window (an NPS answer, a handle
  time), mapped to 0-100 linearly between two bounds (either way round: less can be better) or
  by ranges. A customer with no such event in the window has no mean: the measure is left out
  of its weighted mean (`missing = "skip"`, the default), or scores the configured `missing`;
* a **trait**: a number trait of the customer (ARR, seats used), or the ratio of two (seats used
  per seat bought), mapped like an average; a customer without it (or a ratio over 0) has none.

CER stays the sum of count x weight over the weighted counts: measures only move ES. With no
measures, ES is exactly the seed formula (`formulas.engagement_score`), bit for bit.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from scoring import formulas

PENALTY, AVERAGE, TRAIT = "penalty", "average", "trait"
KINDS = (PENALTY, AVERAGE, TRAIT)
VALUE_PREFIX, VALUED_PREFIX = "v.", "vn."    # scoring.contributions.value_key / valued_key
VALUE_SCALE = 1000                            # scoring.events.VALUE_SCALE: values are kept in thousandths
NO_VALUES: Mapping[str, tuple[int, int]] = {}
NO_TRAITS: Mapping[str, float] = {}


@dataclass(frozen=True, slots=True)
class Measure:
    """One measure of a scorecard, as configured."""

    name: str
    kind: str                                   # PENALTY, AVERAGE or TRAIT
    type: str                                   # the event type it reads ("" for a trait)
    weight: int
    target: float | None = None                 # penalty: the count that scores 0
    linear: tuple[float, float] | None = None   # average: the means that score 0 and 100
    ranges: tuple[tuple[float, float], ...] = ()  # average: (lower bound, score), bounds ascending
    missing: float | None = None                # average without events: this score; None: left out
    trait: str | None = None                    # trait: the number trait it reads
    per: str | None = None                      # trait: the trait it is divided by, if any

    @property
    def reads(self) -> str:
        """What it reads, as people say it: the event type, or the trait (a ratio as `a/b`)."""
        if self.kind != TRAIT:
            return self.type
        return f"{self.trait}/{self.per}" if self.per else str(self.trait)

    def reading(self, counts: Mapping[str, int], values: Mapping[str, tuple[int, int]],
                traits: Mapping[str, float] = NO_TRAITS) -> float | None:
        """What the measure reads: the penalty's count and the average's mean value over the window
        (None when no event carried one), or the trait's value now (None without it)."""
        if self.kind == PENALTY:
            return float(counts.get(self.type, 0))
        if self.kind == TRAIT:
            value = traits.get(str(self.trait))
            if value is None or self.per is None:
                return value
            per = traits.get(self.per)
            return value / per if per else None
        total, valued = values.get(self.type, (0, 0))
        return total / VALUE_SCALE / valued if valued else None

    def score(self, reading: float | None) -> float | None:
        """0-100 for a reading; None when the measure is left out of the mean."""
        if reading is None:
            return self.missing
        if self.kind == PENALTY:
            return 100.0 * max(0.0, 1.0 - reading / self.target) if self.target else 0.0
        if self.linear is not None:
            zero, full = self.linear
            return 100.0 * min(1.0, max(0.0, (reading - zero) / (full - zero)))
        at = bisect.bisect_right([bound for bound, _ in self.ranges], reading)
        return self.ranges[max(at - 1, 0)][1]


class ScoringConfig(Protocol):
    """What a score reads of a scorecard (scoring.config.ScoringConfig, which holds the Measures)."""

    @property
    def weights(self) -> Mapping[str, int]: ...
    @property
    def targets(self) -> Mapping[str, float]: ...
    @property
    def total_weight(self) -> int: ...
    @property
    def measures(self) -> tuple[Measure, ...]: ...


@dataclass(frozen=True, slots=True)
class MeasureScore:
    """Why a measure adds what it adds to ES."""

    name: str
    kind: str
    type: str                # the event type it reads, or its trait (`a/b`: a ratio)
    reading: float | None    # the count (penalty), mean value (average) or trait; None: none
    weight: int
    score: float | None      # 0-100; None: left out of this customer's mean
    es: float                # its points of ES: weight * score / the weights counted

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "type": self.type,
                "reading": None if self.reading is None else round(self.reading, 6), "weight": self.weight,
                "score": None if self.score is None else round(self.score, 6), "es": round(self.es, 6)}


def value_totals(buckets: Mapping[int, Mapping[str, int]], first: int, types: Iterable[str],
                 last: int | None = None) -> dict[str, tuple[int, int]]:
    """(sum of values in thousandths, events that carried one) per type over buckets first..last."""
    keys = [(t, VALUE_PREFIX + t, VALUED_PREFIX + t) for t in types]
    out = {t: (0, 0) for t, _, _ in keys}
    for bucket, counters in buckets.items():
        if bucket >= first and (last is None or bucket <= last):
            for t, value_key, valued_key in keys:
                total, valued = out[t]
                out[t] = (total + counters.get(value_key, 0), valued + counters.get(valued_key, 0))
    return out


def scored(card: ScoringConfig, counts: Mapping[str, int], values: Mapping[str, tuple[int, int]],
           traits: Mapping[str, float] = NO_TRAITS) -> tuple[list[tuple[Measure, float | None, float | None]], int]:
    """Each measure with its reading and score, and the weight ES is divided by for this customer:
    every weighted count's, and each measure's that has a score."""
    rows = []
    total = card.total_weight
    for measure in card.measures:
        reading = measure.reading(counts, values, traits)
        score = measure.score(reading)
        rows.append((measure, reading, score))
        if score is not None:
            total += measure.weight
    return rows, total


def engagement(counts: Mapping[str, int], values: Mapping[str, tuple[int, int]], card: ScoringConfig,
               traits: Mapping[str, float] = NO_TRAITS) -> float:
    """ES: the weighted mean of the scorecard's factors, in 0..100. `values` need only hold the
    averaged types (`card.averaged`), `traits` the customer's number traits."""
    if not card.measures:
        return formulas.engagement_score(counts, card.weights, card.targets, card.total_weight)
    rows, total = scored(card, counts, values, traits)
    if total <= 0:
        return 0.0
    weights, targets = card.weights, card.targets
    terms = [weights[t] * formulas.engagement_component(n, targets[t])
             for t, n in counts.items() if n and weights.get(t, 0) > 0]
    terms.extend(measure.weight * score for measure, _, score in rows if score is not None)
    return min(100.0, max(0.0, math.fsum(terms) / total))


def measure_scores(counts: Mapping[str, int], values: Mapping[str, tuple[int, int]], card: ScoringConfig,
                   traits: Mapping[str, float] = NO_TRAITS) -> tuple[tuple[MeasureScore, ...], int]:
    """Each measure's reading, score and ES points, and the weight ES is divided by."""
    rows, total = scored(card, counts, values, traits)
    return tuple(MeasureScore(m.name, m.kind, m.reads, reading, m.weight, score,
                              m.weight * score / total if score is not None and total else 0.0)
                 for m, reading, score in rows), total
