"""Scoring configuration: one TOML file over documented defaults, validated up front.

Every problem is a :class:`ConfigError` naming the dotted key, so a bad file stops
start-up with a message an operator can act on. Longer than the other core modules because
every key is validated here, in one place, so every error names its key the same way.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from scoring.alert_routes import AlertRoute, RouteError, parse_routes
from scoring.catalogue import BUILTIN_TYPES, PASSIVE_TYPES
from scoring.measures import AVERAGE, KINDS, PENALTY, TRAIT, Measure
from scoring.traits import NUMBER, STRING, TRAIT_KINDS
from scoring.segment_spec import DEFAULT_PATHS, FIELDS, TrackMapping
from scoring.timeutil import DAY, format_duration, parse_duration

TYPE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}\Z")  # \Z: "$" would allow a trailing newline
MESSAGE_PATH = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*\Z")   # a dotted path in a Segment-spec message
MAX_TRACK_NAME = 200
OFF = "off"


class ConfigError(ValueError):
    """A bad configuration value; `key` is the dotted path, e.g. 'scoring.window'."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """What a customer's CER, ES and tier are made of ([scoring], [weights], [targets], [tiers])."""

    window_ms: int
    bucket_ms: int
    benchmark_cer: float
    weight_min: int
    weight_max: int
    decay_half_life_ms: int | None
    weights: Mapping[str, int]            # only non-zero weights: the scored types
    targets: Mapping[str, float]
    tier_excellent: float
    tier_moderate: float
    measures: tuple[Measure, ...] = ()    # the factors that are not a weighted count ([measures])
    total_weight: int = field(init=False, default=0)  # derived: the sum of the scored types' weights
    averaged: tuple[str, ...] = field(init=False, default=())   # derived: the types an average measure reads

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_weight", sum(w for w in self.weights.values() if w > 0))
        object.__setattr__(self, "averaged", tuple(sorted({m.type for m in self.measures if m.kind == AVERAGE})))


@dataclass(frozen=True, slots=True)
class AerConfig:
    """The active engagement rate and its bands ([aer])."""

    window_ms: int
    activity_types: frozenset[str]
    low_below: float
    high_above: float
    reference_lines: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class KpiConfig:
    """The business KPIs' window, cohorts, features and segments ([kpis])."""

    window_ms: int
    retention_period_ms: int
    activation_period_ms: int
    max_lifespan_periods: float
    features: tuple[str, ...]
    segments: tuple[str, ...]
    channels: tuple[str, ...]          # channel labels kept one by one; others count as "other"
    scan_devices: tuple[str, ...]      # scan device labels kept one by one; others "other"
    scan_locations: tuple[str, ...]    # scan location labels kept one by one; others "other"


@dataclass(frozen=True, slots=True)
class TimeConfig:
    """The time gates every event passes ([time])."""

    allowed_lateness_ms: int
    max_future_skew_ms: int
    dedup_horizon_ms: int


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """The alert rules ([alerts]); a span of None is a rule turned off."""

    tier_downgrade: bool
    score_drop_percent: float
    score_drop_window_ms: int
    score_drop_min_reference: float
    inactivity_ms: int | None
    activation_ms: int | None
    max_age_ms: int | None = None   # an alert whose condition began longer before its evaluation is not sent
    routes: tuple[AlertRoute, ...] = ()   # where alerts go ([alerts.routes]: scoring.alert_routes)


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits: what an event or a message may hold before it is rejected ([limits])."""

    max_event_bytes: int
    max_message_bytes: int
    max_batch_events: int
    max_id_length: int
    max_count: int
    max_value: float


@dataclass(frozen=True, slots=True)
class Config:
    """Validated configuration, one sub-config per TOML table; durations in milliseconds.

    A rule reads the table it needs (`config.scoring`, `config.alerts`, ...); what spans
    tables lives here: the types known, the activity types ([activity]) and the retention.
    """

    scoring: ScoringConfig
    aer: AerConfig
    kpis: KpiConfig
    time: TimeConfig
    alerts: AlertConfig
    limits: Limits
    activity_types: frozenset[str]
    history_ms: int                  # [history] horizon: how far back score history reaches
    scorecards: Mapping[str, ScoringConfig] = field(default_factory=dict)   # segment -> its scorecard
    mapping: Mapping[str, TrackMapping] = field(default_factory=dict)       # Segment track event name -> type
    traits: Mapping[str, str] = field(default_factory=dict)   # [traits]: the traits kept, name -> NUMBER/STRING/DATE
    segment_from: str | None = None  # scoring.segment_from: the trait that is the segment; None: events' `segment`
    account_weight: str | None = None  # accounts.weight: the number trait weighing users in an account; None: once each
    known_types: frozenset[str] = field(default=frozenset())
    custom_types: frozenset[str] = field(default=frozenset())
    retention_ms: int = field(init=False, default=0)  # derived: see _retention (read on every event)

    def __post_init__(self) -> None:
        object.__setattr__(self, "retention_ms", self._retention())

    def _retention(self) -> int:
        """How far back buckets must be kept for every score, KPI and alert to be exact.

        Only windows that read buckets count: DAU/WAU/MAU, "active" and AER read the newest
        activity time, which is kept apart from the buckets, whatever its age.
        """
        kpis = self.kpis
        return max(
            self.scoring.window_ms + self.alerts.score_drop_window_ms,
            self.aer.window_ms,
            kpis.window_ms,
            kpis.retention_period_ms + kpis.activation_period_ms,
            kpis.activation_period_ms + (self.alerts.activation_ms or 0),
            self.scoring.window_ms + self.history_ms,     # the oldest history point's window
        ) + self.scoring.bucket_ms

    def is_known_type(self, name: str) -> bool:
        return name in self.known_types

    def scorecard(self, segment: str | None) -> ScoringConfig:
        """The weights, targets and tiers a customer of `segment` is scored by: its segment's
        scorecard ([scorecards.<segment>]) or, without one, the default ([weights], [targets], [tiers])."""
        return self.scorecards.get(segment, self.scoring) if segment is not None else self.scoring


def default_mapping() -> dict[str, Any]:
    text = resources.files("scoring").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then `overrides` (a nested mapping)."""
    merged = default_mapping()
    if path is not None:
        try:
            with open(path, "rb") as handle:
                user = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("<file>", f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("<file>", f"{path} is not valid TOML: {exc}") from None
        _merge(merged, user, "")
    if overrides:
        _merge(merged, dict(overrides), "")
    return build_config(merged)


# Tables whose keys are free-form (event type names / labels) rather than fixed settings.
_OPEN_TABLES = {"weights", "targets", "aer.reference_lines", "scorecards", "mapping", "measures", "traits",
                "alerts.routes"}
SCORECARD_TABLES = ("weights", "targets", "tiers", "measures")


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str) -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if prefix.rstrip(".") in _OPEN_TABLES:
            base[key] = value
            continue
        if key not in base:
            raise ConfigError(dotted, "unknown key")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(dotted, "must be a table")
            _merge(base[key], value, dotted + ".")
        else:
            base[key] = value


def build_config(raw: Mapping[str, Any]) -> Config:
    """Validate a complete nested mapping (defaults already merged in)."""
    r = _Reader(raw)
    bucket_ms = r.duration("scoring.bucket", positive=True)
    if DAY % bucket_ms:
        raise ConfigError("scoring.bucket", "must divide one day exactly (e.g. '1h', '15m', '1d')")

    def window(key: str) -> int:
        ms = r.duration(key, positive=True)
        if ms % bucket_ms:
            raise ConfigError(key, f"must be a whole number of buckets (scoring.bucket = {bucket_ms} ms)")
        return ms

    weight_min = r.integer("scoring.weight_min", minimum=0)
    weight_max = r.integer("scoring.weight_max", minimum=1)
    if weight_max < weight_min:
        raise ConfigError("scoring.weight_max", "must be >= scoring.weight_min")

    for name in r.table("weights"):
        if not TYPE_NAME.match(name):
            raise ConfigError(f"weights.{name}", "type names are lower-case letters, digits, '_', '.', '-' (max 64)")
    custom = frozenset(n for n in r.table("weights") if n not in BUILTIN_TYPES)
    known = frozenset(BUILTIN_TYPES) | custom

    traits: dict[str, str] = {}
    for name, kind in r.table("traits").items():
        if not TYPE_NAME.match(name):
            raise ConfigError(f"traits.{name}", "trait names are lower-case letters, digits, '_', '.', '-' (max 64)")
        if kind not in TRAIT_KINDS:
            raise ConfigError(f"traits.{name}", f"must be one of {', '.join(map(repr, TRAIT_KINDS))} (got {kind!r})")
        traits[name] = kind
    def trait_or(key: str, instead: str, meaning: str, kind: str) -> str | None:
        """A key that names a trait of `kind`, or `instead` (its `meaning`): None."""
        value = r.get(key)
        if value == instead:
            return None
        if traits.get(value) != kind:
            raise ConfigError(key, f"must be {instead!r} ({meaning}) or a {kind} trait of [traits] (got {value!r})")
        return value

    segment_from = trait_or("scoring.segment_from", EVENT_SEGMENT, "the events' segment field", STRING)
    account_weight = trait_or("accounts.weight", EACH_USER, "each user counts once", NUMBER)

    def card(prefix: str, tables: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, int], dict[str, float],
                                                                            float, float, tuple[Measure, ...]]:
        """Weights, targets, tiers and measures of one scorecard, each error naming its key under `prefix`."""
        weights: dict[str, int] = {}
        for name, value in tables["weights"].items():
            key = f"{prefix}weights.{name}"
            if name not in known:
                raise ConfigError(key, "unknown event type (a custom type needs a weight in [weights] first)")
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(key, f"must be an integer weight (got {value!r})")
            if value != 0 and not weight_min <= value <= weight_max:
                raise ConfigError(key, f"must be 0 or within the weight scale {weight_min}..{weight_max} "
                                       f"(got {value})")
            if value:
                weights[name] = value
        measures = tuple(m for name, entry in sorted(tables["measures"].items())
                         if (m := _measure(f"{prefix}measures.{name}", name, entry, known, traits, weight_min,
                                           weight_max)))
        if not weights and not measures:
            raise ConfigError(f"{prefix}weights", "at least one event type needs a non-zero weight (or add a measure)")
        for m in measures:
            if m.kind == PENALTY and m.type in weights:
                raise ConfigError(f"{prefix}measures.{m.name}.type",
                                  f"{m.type} is a weighted count here (weights.{m.type} = {weights[m.type]}); "
                                  "a penalty on it would cancel it: give it weight 0 to make it a penalty")
        targets: dict[str, float] = {}
        for name, value in tables["targets"].items():
            key = f"{prefix}targets.{name}"
            if name not in known:
                raise ConfigError(key, "not a built-in type and not given a weight")
            targets[name] = _positive_number(key, value)
        for name in weights:
            if name not in targets:
                raise ConfigError(f"{prefix}targets.{name}", "every type with a non-zero weight needs a target")
        tiers = _Reader({"tiers": tables["tiers"]})
        try:
            excellent, moderate = tiers.number("tiers.excellent", 0, 100), tiers.number("tiers.moderate", 0, 100)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc.key}", str(exc).split(": ", 1)[1]) from None
        if moderate > excellent:
            raise ConfigError(f"{prefix}tiers.moderate", "must be <= tiers.excellent")
        return weights, targets, excellent, moderate, measures

    base_tables = {name: r.table(name) for name in SCORECARD_TABLES}
    base_card = card("", base_tables)
    segment_cards: dict[str, tuple[dict[str, int], dict[str, float], float, float, tuple[Measure, ...]]] = {}
    for segment, overrides in r.table("scorecards").items():
        prefix = f"scorecards.{segment}."
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"scorecards.{segment}", "must be a table of weights, targets, tiers and measures")
        for name, table in overrides.items():
            if name not in SCORECARD_TABLES:
                raise ConfigError(f"{prefix}{name}", "unknown key (a scorecard has weights, targets, tiers and measures)")
            if not isinstance(table, Mapping):
                raise ConfigError(f"{prefix}{name}", "must be a table")
        segment_cards[segment] = card(prefix, {name: {**base_tables[name], **overrides.get(name, {})}
                                               for name in SCORECARD_TABLES})

    aer_types = r.type_list("aer.activity_types", known)
    low, high = r.number("aer.low_below", 0, 100), r.number("aer.high_above", 0, 100)
    if high < low:
        raise ConfigError("aer.high_above", "must be >= aer.low_below")
    lines = {}
    for name, value in r.table("aer.reference_lines").items():
        lines[name] = _bounded_number(f"aer.reference_lines.{name}", value, 0, 100)

    activity = r.get("activity.types")
    if activity == "all":
        activity_types = frozenset(known - PASSIVE_TYPES)
    else:
        activity_types = r.type_list("activity.types", known)

    half_life_raw = r.get("scoring.decay_half_life")
    half_life = None if half_life_raw == OFF else r.duration("scoring.decay_half_life", positive=True)

    lateness = r.duration("time.allowed_lateness")
    dedup = r.duration("time.dedup_horizon")
    if dedup < lateness:
        raise ConfigError("time.dedup_horizon", "must be >= time.allowed_lateness, or redeliveries could count twice")

    alerts = AlertConfig(
        tier_downgrade=r.boolean("alerts.tier_downgrade"),
        score_drop_percent=r.number("alerts.score_drop_percent", 0, 100),
        score_drop_window_ms=window("alerts.score_drop_window"),
        score_drop_min_reference=r.number("alerts.score_drop_min_reference", 0, 100),
        inactivity_ms=r.optional_duration("alerts.inactivity"),
        activation_ms=r.optional_duration("alerts.activation"),
        max_age_ms=r.optional_duration("alerts.max_age"),
        routes=_routes(r.table("alerts.routes")),
    )

    max_event_bytes = r.integer("limits.max_event_bytes", minimum=256)
    max_message_bytes = r.integer("limits.max_message_bytes", minimum=256)
    if max_message_bytes < max_event_bytes:
        raise ConfigError("limits.max_message_bytes", f"must be at least limits.max_event_bytes ({max_event_bytes})")

    def scoring(weights: dict[str, int], targets: dict[str, float], excellent: float, moderate: float,
                measures: tuple[Measure, ...]) -> ScoringConfig:
        return ScoringConfig(
            window_ms=window("scoring.window"), bucket_ms=bucket_ms,
            benchmark_cer=r.number("scoring.benchmark_cer", 0, None), weight_min=weight_min, weight_max=weight_max,
            decay_half_life_ms=half_life, weights=weights, targets=targets,
            tier_excellent=excellent, tier_moderate=moderate, measures=measures)

    return Config(
        scoring=scoring(*base_card),
        mapping=_track_mapping(r.table("mapping"), known),
        scorecards={segment: scoring(*parts) for segment, parts in sorted(segment_cards.items())},
        aer=AerConfig(window_ms=window("aer.window"), activity_types=aer_types, low_below=low, high_above=high,
                      reference_lines=lines),
        kpis=KpiConfig(
            window_ms=window("kpis.window"), retention_period_ms=window("kpis.retention_period"),
            activation_period_ms=window("kpis.activation_period"),
            max_lifespan_periods=r.number("kpis.max_lifespan_periods", 1, None),
            features=r.label_list("kpis.features"), segments=r.label_list("kpis.segments"),
            channels=r.label_list("kpis.channels"), scan_devices=r.label_list("kpis.scan_devices"),
            scan_locations=r.label_list("kpis.scan_locations")),
        time=TimeConfig(allowed_lateness_ms=lateness, max_future_skew_ms=r.duration("time.max_future_skew"),
                        dedup_horizon_ms=dedup),
        alerts=alerts,
        limits=Limits(
            max_event_bytes=max_event_bytes, max_message_bytes=max_message_bytes,
            max_batch_events=r.integer("limits.max_batch_events", minimum=1),
            max_id_length=r.integer("limits.max_id_length", minimum=8),
            max_count=r.integer("limits.max_count", minimum=1), max_value=r.number("limits.max_value", 1, None)),
        activity_types=activity_types,
        history_ms=window("history.horizon"),
        traits=traits,
        segment_from=segment_from,
        account_weight=account_weight,
        known_types=known,
        custom_types=custom,
    )


def config_mapping(config: Config) -> dict[str, Any]:
    """The whole config as the nested mapping a TOML file gives: `build_config` of it is `config`.

    What `engage config show` prints: every key of every table, weights of 0 included (a
    type tracked but not scored), type lists spelled out, durations in their shortest form.
    """
    def duration(ms: int | None) -> str:
        return OFF if ms is None else format_duration(ms)

    sc, aer, kpis, time, alerts, limits = config.scoring, config.aer, config.kpis, config.time, config.alerts, \
        config.limits
    weighted = set(sc.weights) | set(config.custom_types) | set(sc.targets)
    return {
        "scoring": {"window": duration(sc.window_ms), "bucket": duration(sc.bucket_ms),
                    "segment_from": config.segment_from or EVENT_SEGMENT,
                    "benchmark_cer": sc.benchmark_cer, "weight_min": sc.weight_min,
                    "weight_max": sc.weight_max, "decay_half_life": duration(sc.decay_half_life_ms)},
        "weights": {name: sc.weights.get(name, 0) for name in sorted(weighted)},
        "targets": dict(sorted(sc.targets.items())),
        "tiers": {"excellent": sc.tier_excellent, "moderate": sc.tier_moderate},
        "measures": _measures_table(sc),
        "aer": {"window": duration(aer.window_ms), "activity_types": sorted(aer.activity_types),
                "low_below": aer.low_below, "high_above": aer.high_above,
                "reference_lines": dict(aer.reference_lines)},
        "activity": {"types": sorted(config.activity_types)},
        "kpis": {"window": duration(kpis.window_ms), "retention_period": duration(kpis.retention_period_ms),
                 "activation_period": duration(kpis.activation_period_ms),
                 "max_lifespan_periods": kpis.max_lifespan_periods, "features": list(kpis.features),
                 "segments": list(kpis.segments), "channels": list(kpis.channels),
                 "scan_devices": list(kpis.scan_devices), "scan_locations": list(kpis.scan_locations)},
        "time": {"allowed_lateness": duration(time.allowed_lateness_ms),
                 "max_future_skew": duration(time.max_future_skew_ms),
                 "dedup_horizon": duration(time.dedup_horizon_ms)},
        "alerts": {"tier_downgrade": alerts.tier_downgrade, "score_drop_percent": alerts.score_drop_percent,
                   "score_drop_window": duration(alerts.score_drop_window_ms),
                   "score_drop_min_reference": alerts.score_drop_min_reference,
                   "inactivity": duration(alerts.inactivity_ms), "activation": duration(alerts.activation_ms),
                   "max_age": duration(alerts.max_age_ms),
                   "routes": {route.name: route.to_table() for route in alerts.routes}},
        "history": {"horizon": duration(config.history_ms)},
        "accounts": {"weight": config.account_weight or EACH_USER},
        "traits": dict(sorted(config.traits.items())),
        "scorecards": {segment: {"weights": {n: card.weights.get(n, 0) for n in sorted(weighted | set(card.weights))},
                                 "targets": dict(sorted(card.targets.items())),
                                 "tiers": {"excellent": card.tier_excellent, "moderate": card.tier_moderate},
                                 "measures": _measures_table(card, sc)}
                       for segment, card in config.scorecards.items()},
        "mapping": {name: _mapping_entry(entry) for name, entry in sorted(config.mapping.items())},
        "limits": {"max_event_bytes": limits.max_event_bytes, "max_message_bytes": limits.max_message_bytes,
                   "max_batch_events": limits.max_batch_events, "max_id_length": limits.max_id_length,
                   "max_count": limits.max_count, "max_value": limits.max_value},
    }


_MEASURE_KEYS = {PENALTY: {"kind", "type", "weight", "target"},
                 AVERAGE: {"kind", "type", "weight", "linear", "ranges", "missing"},
                 TRAIT: {"kind", "trait", "per", "weight", "linear", "ranges", "missing"}}
EVENT_SEGMENT = "segment"
EACH_USER = "users"
SKIP = "skip"


def _measure(key: str, name: str, entry: Any, known: frozenset[str], traits: Mapping[str, str], weight_min: int,
             weight_max: int) -> Measure | None:
    """[measures.<name>]: a penalty count, an average value or a numeric trait (or a ratio of two);
    None when its weight is 0 (a segment's scorecard drops a default measure that way)."""
    if not TYPE_NAME.match(name):
        raise ConfigError(key, "measure names are lower-case letters, digits, '_', '.', '-' (max 64)")
    if not isinstance(entry, Mapping):
        raise ConfigError(key, f"must be a table with kind ({', '.join(KINDS)}), type (or trait) and weight")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{key}.kind", f"must be {' or '.join(repr(k) for k in KINDS)} (got {kind!r})")
    for field_name in entry:
        if field_name not in _MEASURE_KEYS[kind]:
            raise ConfigError(f"{key}.{field_name}", f"unknown key for a {kind} measure "
                                                     f"(it has {', '.join(sorted(_MEASURE_KEYS[kind]))})")
    if kind == TRAIT:
        type_name = ""
        for field_name in ("trait", "per"):
            if field_name in entry and traits.get(entry[field_name]) != NUMBER:
                raise ConfigError(f"{key}.{field_name}", f"must be a number trait of [traits] (got {entry[field_name]!r})")
        if "trait" not in entry:
            raise ConfigError(f"{key}.trait", "a trait measure reads a number trait of [traits]")
    else:
        type_name = entry.get("type")
        if type_name not in known:
            raise ConfigError(f"{key}.type", f"must be a known event type (got {type_name!r})")
    weight = entry.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise ConfigError(f"{key}.weight", f"must be an integer weight (got {weight!r})")
    if weight != 0 and not weight_min <= weight <= weight_max:
        raise ConfigError(f"{key}.weight", f"must be 0 or within the weight scale {weight_min}..{weight_max} "
                                           f"(got {weight})")
    if kind == PENALTY:
        if "target" not in entry:
            raise ConfigError(f"{key}.target", "a penalty needs the count at which it scores 0")
        measure = Measure(name, kind, type_name, weight, target=_positive_number(f"{key}.target", entry["target"]))
    else:
        measure = Measure(name, kind, type_name, weight, linear=_linear(key, entry.get("linear")),
                          ranges=_ranges(key, entry.get("ranges")), missing=_missing(key, entry.get("missing", SKIP)),
                          trait=entry.get("trait"), per=entry.get("per"))
        if (measure.linear is None) == (not measure.ranges):
            raise ConfigError(f"{key}.linear", "an average is mapped to 0-100 by exactly one of `linear` "
                                               "(the means that score 0 and 100) or `ranges`")
    return measure if weight else None


def _linear(key: str, raw: Any) -> tuple[float, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2:
        raise ConfigError(f"{key}.linear", "must be [mean that scores 0, mean that scores 100]")
    zero, full = (_bounded_number(f"{key}.linear", v, None, None) for v in raw)
    if zero == full:
        raise ConfigError(f"{key}.linear", "the two means must differ")
    return zero, full


def _ranges(key: str, raw: Any) -> tuple[tuple[float, float], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(r, list) and len(r) == 2 for r in raw):
        raise ConfigError(f"{key}.ranges", "must be a list of [lower bound, score] pairs, e.g. [[0, 0], [7, 50], [9, 100]]")
    ranges = tuple((_bounded_number(f"{key}.ranges", bound, None, None),
                    _bounded_number(f"{key}.ranges", score, 0, 100)) for bound, score in raw)
    if any(a[0] >= b[0] for a, b in zip(ranges, ranges[1:])):
        raise ConfigError(f"{key}.ranges", "lower bounds must be strictly ascending")
    return ranges


def _missing(key: str, raw: Any) -> float | None:
    if raw == SKIP:
        return None
    if isinstance(raw, str):
        raise ConfigError(f"{key}.missing", f"must be {SKIP!r} or a score 0-100 (got {raw!r})")
    return _bounded_number(f"{key}.missing", raw, 0, 100)


def _measure_entry(measure: Measure, weight: int | None = None) -> dict[str, Any]:
    """A measure as its TOML table (`weight` given: the same measure at another weight)."""
    out: dict[str, Any] = {"kind": measure.kind, "weight": measure.weight if weight is None else weight}
    if measure.kind == TRAIT:
        out.update({"trait": measure.trait, **({} if measure.per is None else {"per": measure.per})})
    else:
        out["type"] = measure.type
    if measure.kind == PENALTY:
        out["target"] = measure.target
    else:
        if measure.linear is not None:
            out["linear"] = list(measure.linear)
        else:
            out["ranges"] = [list(r) for r in measure.ranges]
        out["missing"] = SKIP if measure.missing is None else measure.missing
    return out


def _measures_table(card: ScoringConfig, base: ScoringConfig | None = None) -> dict[str, Any]:
    """A scorecard's measures as [measures]; a segment's also names the default's it dropped (weight 0)."""
    own = {m.name: _measure_entry(m) for m in card.measures}
    dropped = {m.name: _measure_entry(m, 0) for m in (base.measures if base is not None else ())
               if m.name not in own}
    return dict(sorted({**own, **dropped}.items()))


def _track_mapping(table: Mapping[str, Any], known: frozenset[str]) -> dict[str, TrackMapping]:
    """[mapping]: each Segment track event name -> its event type, and the message paths its fields
    are read from (`"Order Completed" = { type = "purchase", value = "properties.revenue" }`, or just
    `"Page Viewed" = "page_view"`); the paths not given are the defaults (`properties.<field>`)."""
    out: dict[str, TrackMapping] = {}
    for name, entry in table.items():
        key = f'mapping."{name}"'
        if not name or len(name) > MAX_TRACK_NAME or not name.isprintable():
            raise ConfigError(key, f"a track event name is 1..{MAX_TRACK_NAME} printable characters")
        if isinstance(entry, str):
            entry = {"type": entry}
        if not isinstance(entry, Mapping):
            raise ConfigError(key, "must be an event type, or a table with `type` and the paths of its fields")
        type_name = entry.get("type")
        if type_name not in known:
            raise ConfigError(f"{key}.type", f"must be a known event type (got {type_name!r})")
        paths = dict(DEFAULT_PATHS)
        for field_name, path in entry.items():
            if field_name == "type":
                continue
            if field_name not in FIELDS:
                raise ConfigError(f"{key}.{field_name}", f"not a field a mapping reads (one of {', '.join(FIELDS)})")
            if not isinstance(path, str) or not MESSAGE_PATH.match(path):
                raise ConfigError(f"{key}.{field_name}", "must be a dotted path in the message, e.g. 'properties.revenue'")
            paths[field_name] = path
        out[name] = TrackMapping(type_name, {f: tuple(p.split(".")) for f, p in paths.items()})
    return out


def _mapping_entry(entry: TrackMapping) -> str | dict[str, str]:
    """A [mapping] entry as written: the type alone, or with the paths that differ from the defaults."""
    paths = {f: ".".join(p) for f, p in entry.paths.items() if ".".join(p) != DEFAULT_PATHS[f]}
    return {"type": entry.type, **paths} if paths else entry.type


def _positive_number(key: str, value: Any) -> float:
    number = _bounded_number(key, value, 0, None)
    if number <= 0:
        raise ConfigError(key, f"must be greater than 0 (got {value!r})")
    return number


def _bounded_number(key: str, value: Any, low: float | None, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"must be a number (got {value!r})")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise ConfigError(key, f"must be within {bounds} (got {value!r})")
    return float(value)


def _routes(table: Mapping[str, Any]) -> tuple[AlertRoute, ...]:
    try:
        return parse_routes(table)
    except RouteError as err:
        raise ConfigError(err.key, err.message) from None


class _Reader:
    """Typed access to a nested mapping by dotted key, raising ConfigError on misuse."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw

    def get(self, key: str) -> Any:
        node: Any = self._raw
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(key, "missing")
            node = node[part]
        return node

    def table(self, key: str) -> Mapping[str, Any]:
        value = self.get(key)
        if not isinstance(value, Mapping):
            raise ConfigError(key, "must be a table")
        return value

    def duration(self, key: str, positive: bool = False) -> int:
        try:
            ms = parse_duration(self.get(key))
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
        if positive and ms <= 0:
            raise ConfigError(key, "must be longer than zero")
        return ms

    def optional_duration(self, key: str) -> int | None:
        return None if self.get(key) == OFF else self.duration(key, positive=True)

    def integer(self, key: str, minimum: int | None = None) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer (got {value!r})")
        if minimum is not None and value < minimum:
            raise ConfigError(key, f"must be >= {minimum} (got {value})")
        return value

    def number(self, key: str, low: float | None, high: float | None) -> float:
        return _bounded_number(key, self.get(key), low, high)

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false (got {value!r})")
        return value

    def type_list(self, key: str, known: frozenset[str]) -> frozenset[str]:
        value = self.get(key)
        if not isinstance(value, list) or not value:
            raise ConfigError(key, "must be a non-empty list of event types")
        for name in value:
            if name not in known:
                raise ConfigError(key, f"unknown event type {name!r}")
        return frozenset(value)

    def label_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(key, "must be a list of non-empty strings")
        return tuple(dict.fromkeys(value))
