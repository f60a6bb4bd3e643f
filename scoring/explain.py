"""Why a customer's score moved: the data and the one sentence an alert carries.

A customer-success manager reading an alert needs the reasons, not a score: which
activities fell, how long the customer has been quiet, what it last told a survey.
:func:`explain` compares the scoring window as it was one `alerts.score_drop_window` ago
with the window now, type by type, in ES points (what each type adds to ES), and names
the types that moved ES the most in the direction it moved (for an alert: the biggest
losses); then days without activity, and a detractor's NPS or an
unsatisfied CSAT answer in the window. Every number comes from the customer's counters:
nothing is stored for it, so `GET /customers/{id}` explains any `as_of` the same way.

An inactivity or activation alert is about silence, not a score that moved:
:func:`explain_silence` says how long the customer has been silent and what it did in the
scoring window before it went silent (its drivers: those activities then and now).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scoring import formulas
from scoring.catalogue import SURVEY_SCALES
from scoring.config import Config, ScoringConfig
from scoring.contributions import survey_key, value_key, valued_key
from scoring.measures import AVERAGE, PENALTY, MeasureScore, engagement, measure_scores
from scoring.scores import ScoreCard, score_card, trait_numbers
from scoring.state import COUNT_PREFIX, CustomerState
from scoring.timeutil import DAY, format_duration, format_rfc3339
from scoring.windows import bucket_of, window_start_bucket

MAX_DRIVERS = 3
QUIET_DAYS = 7          # a week without activity is worth saying
NPS_DETRACTOR = 6       # mean NPS answer at or below: a detractor's
CSAT_UNSATISFIED = 2    # mean CSAT answer at or below: unsatisfied

# How a type reads in a sentence ("likes -62 %"); others: the type name with spaces.
LABELS = {
    "like": "likes", "comment": "comments", "share": "shares", "follow": "follows", "mention": "mentions",
    "tag": "tags", "reach_out": "reach-outs", "session_start": "visits", "page_view": "page views",
    "action": "actions", "feature_used": "feature uses", "points_earned": "points earned",
    "points_redeemed": "points redeemed", "email_open": "email opens", "email_click": "email clicks",
    "ad_click": "ad clicks", "conversion": "conversions", "purchase": "purchases", "nps_response": "NPS answers",
    "csat_response": "CSAT answers", "ces_response": "CES answers", "review": "reviews",
    "social_mention": "social mentions", "ticket_opened": "tickets opened", "ticket_resolved": "tickets resolved",
    "brand_search": "brand searches", "scan": "card scans",
}


def label(type_name: str) -> str:
    return LABELS.get(type_name, type_name.replace("_", " "))


@dataclass(frozen=True, slots=True)
class Driver:
    """One weighted type's count, or one measure's reading, and its ES points then and now."""

    type: str                       # the event type, or the measure's name
    before: float | None            # a count, or an average measure's mean (None: no answer)
    now: float | None
    es_points_before: float
    es_points_now: float
    measure: str | None = None      # the measure's kind; None: a weighted count

    @property
    def change_percent(self) -> float | None:
        if self.before is None or self.now is None or self.before == 0:
            return None
        return 100.0 * (self.now - self.before) / self.before

    def phrase(self) -> str:
        if self.measure == AVERAGE:
            def mean(x: float | None) -> str:
                return "none" if x is None else f"{x:.3g}"
            return f"{label(self.type)} {mean(self.before)} → {mean(self.now)}"
        change = self.change_percent
        if change is None:
            return f"{label(self.type)} {self.before or 0:,.0f} → {self.now or 0:,.0f}"
        return f"{label(self.type)} {change:+.0f} %".replace("-", "−")

    def to_dict(self) -> dict[str, object]:
        change = self.change_percent
        return {"type": self.type, "before": self.before, "now": self.now,
                "change_percent": None if change is None else round(change, 6),
                "es_points_before": round(self.es_points_before, 6), "es_points_now": round(self.es_points_now, 6),
                **({} if self.measure is None else {"measure": self.measure})}


@dataclass(frozen=True, slots=True)
class Explanation:
    sentence: str
    since_ms: int                    # the instant compared with: as_of - alerts.score_drop_window
    es_before: float
    tier_before: formulas.Tier
    es_now: float
    tier_now: formulas.Tier
    drivers: tuple[Driver, ...]      # the types that moved ES most its way: losses if it fell (up to MAX_DRIVERS)
    quiet_days: int | None           # whole days without activity (since joining if never active), if >= QUIET_DAYS
    nps: float | None                # mean NPS answer in the window, if a detractor's
    csat: float | None               # mean CSAT answer in the window, if unsatisfied

    def to_dict(self) -> dict[str, object]:
        return {"sentence": self.sentence, "since": self.since_ms, "es_before": round(self.es_before, 6),
                "tier_before": self.tier_before.value, "es_now": round(self.es_now, 6),
                "tier_now": self.tier_now.value, "drivers": [d.to_dict() for d in self.drivers],
                "quiet_days": self.quiet_days, "nps": self.nps, "csat": self.csat}


def _window_totals(state: CustomerState, first: int, last: int) -> dict[str, int]:
    totals: dict[str, int] = {}
    for bucket, counters in state.buckets.items():
        if first <= bucket <= last:
            for key, amount in counters.items():
                totals[key] = totals.get(key, 0) + amount
    return totals


def _mean_answer(totals: Mapping[str, int], survey: str) -> float | None:
    low, high = SURVEY_SCALES[survey]
    answers = {s: totals.get(survey_key(survey, s), 0) for s in range(low, high + 1)}
    responses = sum(answers.values())
    return None if responses == 0 else sum(s * n for s, n in answers.items()) / responses


@dataclass(frozen=True, slots=True)
class _Window:
    """One scoring window's counter totals, read as a score reads them: counts per type, the
    average measures' value sums, and each factor's ES points."""

    totals: dict[str, int]
    counts: dict[str, int]
    scoring: ScoringConfig
    total: int                                # the weight ES is divided by
    measures: tuple[MeasureScore, ...]
    es: float

    def points(self, type_name: str) -> float:
        """What a type's count adds to ES (0 for a type without a weight)."""
        weight = self.scoring.weights.get(type_name, 0)
        if not weight or not self.total:
            return 0.0
        return weight * formulas.engagement_component(self.counts.get(type_name, 0),
                                                      self.scoring.targets[type_name]) / self.total

    @classmethod
    def of(cls, totals: dict[str, int], scoring: ScoringConfig, traits: Mapping[str, float], types: Iterable[str],
           counts: dict[str, int] | None = None, es: float | None = None) -> _Window:
        """The window's reading of `types` (its counts, when not given) and ES (when not given)."""
        if counts is None:
            counts = {t: n for t in types if (n := totals.get(COUNT_PREFIX + t, 0))}
        values = {t: (totals.get(value_key(t), 0), totals.get(valued_key(t), 0)) for t in scoring.averaged}
        measures, total = measure_scores(counts, values, scoring, traits)
        return cls(totals, counts, scoring, total, measures,
                   engagement(counts, values, scoring, traits) if es is None else es)


def _then_and_now(state: CustomerState, since: int, as_of_ms: int, config: Config, card: ScoreCard,
                  counts_now: dict[str, int] | None = None, also: Iterable[str] = ()) -> tuple[_Window, _Window]:
    """The scoring window as it was at `since` and as it is at `as_of_ms` (its ES the card's), each read
    for the scored types and `also` (its counts `counts_now`, if given)."""
    scoring, bucket_ms = config.scorecard(state.segment_in(config)), config.scoring.bucket_ms
    then = _window_totals(state, window_start_bucket(since, scoring.window_ms, bucket_ms), bucket_of(since, bucket_ms))
    now = _window_totals(state, window_start_bucket(as_of_ms, scoring.window_ms, bucket_ms),
                         bucket_of(as_of_ms, bucket_ms))
    traits = trait_numbers(state, config)      # only their newest values are kept: then reads them too
    types = {*scoring.weights, *(m.type for m in scoring.measures if m.kind == PENALTY), *also}
    return (_Window.of(then, scoring, traits, types),
            _Window.of(now, scoring, traits, types, counts_now, es=card.es))


def _drivers(then: _Window, now: _Window, scoring: ScoringConfig) -> list[Driver]:
    """Every weighted type and measure, then and now."""
    moved = [Driver(t, then.counts.get(t, 0), now.counts.get(t, 0), then.points(t), now.points(t))
             for t in sorted(scoring.weights)]
    moved.extend(Driver(b.name, b.reading, a.reading, b.es, a.es, b.kind) for b, a in zip(then.measures, now.measures))
    return moved


def _span(ms: int) -> str:
    return f"{ms // DAY} days" if ms % DAY == 0 else format_duration(ms)


def explain(state: CustomerState, as_of_ms: int, config: Config, card: ScoreCard | None = None) -> Explanation:
    """Why the customer's ES is what it is at `as_of_ms`, against one score-drop window earlier."""
    scoring = config.scorecard(state.segment_in(config))
    card = card or score_card(state, as_of_ms, config, detail=False)
    since = as_of_ms - config.alerts.score_drop_window_ms
    then, now = _then_and_now(state, since, as_of_ms, config, card, card.counts)
    es_before = then.es
    moved = _drivers(then, now, scoring)
    # the types that moved ES the most in the direction it moved (an alert: the biggest losses)
    sign = 1 if card.es > es_before else -1
    drivers = tuple(sorted((d for d in moved if sign * (d.es_points_now - d.es_points_before) > 0),
                           key=lambda d: (-sign * (d.es_points_now - d.es_points_before), d.type))[:MAX_DRIVERS])

    joined = state.membership_start(as_of_ms)
    quiet_from = card.last_active_ms if card.last_active_ms is not None else joined
    quiet_days = None if quiet_from is None else (as_of_ms - quiet_from) // DAY
    if quiet_days is not None and quiet_days < QUIET_DAYS:
        quiet_days = None
    nps = _mean_answer(now.totals, "nps_response")
    csat = _mean_answer(now.totals, "csat_response")
    nps = nps if nps is not None and nps <= NPS_DETRACTOR else None
    csat = csat if csat is not None and csat <= CSAT_UNSATISFIED else None

    tier_before = formulas.tier(es_before, scoring.tier_excellent, scoring.tier_moderate)
    reasons = [d.phrase() for d in drivers]
    if quiet_days is not None:
        reasons.append(f"no activity for {quiet_days} days" if card.last_active_ms is not None
                       else f"never active since joining {quiet_days} days ago")
    if nps is not None:
        reasons.append(f"NPS {nps:.3g}")
    if csat is not None:
        reasons.append(f"CSAT {csat:.3g}/5")
    tiers = (f"{tier_before.value} → {card.tier.value}" if tier_before is not card.tier
             else f"still {card.tier.value}")
    sentence = (f"ES {es_before:.1f} → {card.es:.1f} ({tiers}) over {_span(config.alerts.score_drop_window_ms)}: "
                + (", ".join(reasons) if reasons else "no scored activity changed"))
    return Explanation(sentence, since, es_before, tier_before, card.es, card.tier, drivers, quiet_days, nps, csat)


def explain_silence(state: CustomerState, as_of_ms: int, config: Config, card: ScoreCard | None = None) -> Explanation:
    """Why an inactivity or activation alert fired: how long the customer has been silent (since its
    last activity, or since joining if never active), and its most frequent activities in the
    scoring window that ended when it went silent, compared with the window now."""
    scoring = config.scorecard(state.segment_in(config))
    card = card or score_card(state, as_of_ms, config, detail=False)
    joined = state.membership_start(as_of_ms)
    last = card.last_active_ms
    since = last if last is not None else (joined if joined is not None else as_of_ms)
    quiet_days = (as_of_ms - since) // DAY
    then, now = _then_and_now(state, since, as_of_ms, config, card, also=config.activity_types)
    es_before = then.es
    did = sorted(((then.counts.get(t, 0), t) for t in config.activity_types if then.counts.get(t, 0)),
                 key=lambda item: (-item[0], item[1]))[:MAX_DRIVERS]
    drivers = tuple(Driver(t, n, now.counts.get(t, 0), then.points(t), now.points(t)) for n, t in did)
    tier_before = formulas.tier(es_before, scoring.tier_excellent, scoring.tier_moderate)
    day = format_rfc3339(since)[:10]
    if last is None:
        sentence = f"Never active since joining {quiet_days} days ago ({day})"
    else:
        before = ", ".join(f"{n:,} {label(t)}" for n, t in did) or "nothing scored"
        sentence = (f"No activity for {quiet_days} days (last active {day}); in the "
                    f"{_span(scoring.window_ms)} before: {before}")
    sentence += f"; ES {card.es:.1f} ({card.tier.value})"
    return Explanation(sentence, since, es_before, tier_before, card.es, card.tier, drivers, quiet_days, None, None)
