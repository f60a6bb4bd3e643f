"""scoring.config (one validated config file, errors name the key: docs/configuration.md) and durations."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

import scoring
from scoring.config import ConfigError, build_config, config_mapping, default_mapping, load_config
from scoring.timeutil import format_duration, parse_duration

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

DEFAULTS_TOML = Path(scoring.__file__).with_name("defaults.toml")

# The built-in event types of docs/events.md, by hand.
SPEC_TYPES = {
    "member_joined", "member_left", "points_earned", "points_redeemed",
    "follow", "like", "comment", "share", "mention", "tag", "reach_out",
    "session_start", "page_view", "action", "session_end", "feature_used",
    "email_delivered", "email_open", "email_click", "ad_impression", "ad_click", "conversion",
    "purchase",
    "nps_response", "csat_response", "ces_response", "review", "social_mention",
    "ticket_opened", "ticket_resolved",
    "brand_search", "competitor_search", "scan",     # metrics #13, #27 (docs/scores-and-kpis.md)
    "traits",                                          # what a customer is (docs/traits.md)
}
PASSIVE = {"member_joined", "member_left", "email_delivered", "ad_impression", "competitor_search", "traits"}


# --- defaults ---------------------------------------------------------------------------------


def test_documented_defaults():
    c = load_config()
    assert c.scoring.window_ms == 30 * DAY
    assert c.scoring.bucket_ms == DAY
    assert c.scoring.benchmark_cer == 500
    assert (c.scoring.weight_min, c.scoring.weight_max) == (1, 10)
    assert c.scoring.decay_half_life_ms == 14 * DAY
    assert (c.scoring.tier_excellent, c.scoring.tier_moderate) == (80, 60)
    assert c.aer.window_ms == 30 * DAY
    assert c.aer.activity_types == {"points_earned", "points_redeemed"}
    assert (c.aer.low_below, c.aer.high_above) == (15, 25)
    assert dict(c.aer.reference_lines) == {"ecommerce": 20, "saas": 25, "retail_top_quartile": 30}
    assert c.kpis.window_ms == 30 * DAY
    assert c.kpis.retention_period_ms == 30 * DAY
    assert c.kpis.activation_period_ms == 7 * DAY
    assert c.kpis.max_lifespan_periods == 120
    assert (c.kpis.features, c.kpis.segments) == ((), ())
    assert c.time.allowed_lateness_ms == DAY
    assert c.time.max_future_skew_ms == 5 * MINUTE
    assert c.time.dedup_horizon_ms == 2 * DAY
    assert c.alerts.tier_downgrade is True
    assert c.alerts.score_drop_percent == 30
    assert c.alerts.score_drop_window_ms == 7 * DAY
    assert c.alerts.score_drop_min_reference == 30
    assert c.alerts.inactivity_ms == 14 * DAY
    assert c.alerts.activation_ms == 7 * DAY
    assert c.limits.max_event_bytes == 65_536
    assert c.limits.max_id_length == 128
    assert c.limits.max_count == 1_000_000
    assert c.limits.max_value == 1e12


def test_default_weights_include_the_cer_example_and_leave_zero_weights_unscored():
    c = load_config()
    for name, weight in {"follow": 3, "like": 1, "comment": 2, "reach_out": 2, "tag": 2}.items():
        assert c.scoring.weights[name] == weight
    assert "ticket_opened" not in c.scoring.weights and "ticket_resolved" not in c.scoring.weights
    # targets: what a very engaged customer does in a month (the CER worked example's counts are not targets)
    assert (c.scoring.targets["follow"], c.scoring.targets["like"], c.scoring.targets["comment"]) == (3, 75, 10)


def test_weights_and_targets_match_defaults_toml():
    with open(DEFAULTS_TOML, "rb") as handle:
        documented = tomllib.load(handle)
    c = load_config()
    assert dict(c.scoring.weights) == {k: v for k, v in documented["weights"].items() if v != 0}
    assert dict(c.scoring.targets) == {k: float(v) for k, v in documented["targets"].items()}
    assert documented["scoring"]["window"] == "30d" and documented["scoring"]["bucket"] == "1d"
    assert documented["time"] == {"allowed_lateness": "1d", "max_future_skew": "5m", "dedup_horizon": "2d"}


def test_default_known_types_are_the_documented_built_in_types():
    c = load_config()
    assert c.known_types == SPEC_TYPES
    assert c.custom_types == set()
    assert c.is_known_type("like") and not c.is_known_type("webinar_attended")


def test_activity_all_excludes_passive_types():
    c = load_config()
    assert c.activity_types == SPEC_TYPES - PASSIVE
    assert not c.activity_types & PASSIVE


# --- file and overrides -----------------------------------------------------------------------


def test_toml_file_overrides_keys(tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text(
        """
[scoring]
window = "14d"
bucket = "1h"
benchmark_cer = 250

[weights]
like = 4

[tiers]
excellent = 90

[time]
allowed_lateness = "2h"
"""
    )
    c = load_config(path)
    assert (c.scoring.window_ms, c.scoring.bucket_ms, c.scoring.benchmark_cer) == (14 * DAY, HOUR, 250)
    assert c.scoring.weights["like"] == 4
    assert c.scoring.weights["follow"] == 3           # untouched keys keep their defaults
    assert (c.scoring.tier_excellent, c.scoring.tier_moderate) == (90, 60)
    assert c.time.allowed_lateness_ms == 2 * HOUR
    assert c.time.max_future_skew_ms == 5 * MINUTE


def test_path_may_be_a_string(tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text('[scoring]\nbenchmark_cer = 123\n')
    assert load_config(str(path)).scoring.benchmark_cer == 123


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text('[scoring]\nbenchmark_cer = 123\nwindow = "7d"\n')
    c = load_config(path, overrides={"scoring": {"benchmark_cer": 321}})
    assert (c.scoring.benchmark_cer, c.scoring.window_ms) == (321, 7 * DAY)


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("# nothing\n")
    assert load_config(path) == load_config()


def test_durations_may_be_bare_seconds():
    c = load_config(overrides={"time": {"max_future_skew": 600, "allowed_lateness": 3600}})
    assert (c.time.max_future_skew_ms, c.time.allowed_lateness_ms) == (10 * MINUTE, HOUR)


def test_reference_lines_are_an_open_table():
    c = load_config(overrides={"aer": {"reference_lines": {"fintech": 18}}})
    assert c.aer.reference_lines["fintech"] == 18
    assert c.aer.reference_lines["saas"] == 25


@pytest.mark.parametrize(("key", "section"), [("decay_half_life", "scoring"), ("inactivity", "alerts"), ("activation", "alerts")])
def test_off_disables(key, section):
    c = load_config(overrides={section: {key: "off"}})
    value = c.scoring.decay_half_life_ms if key == "decay_half_life" else getattr(c.alerts, f"{key}_ms")
    assert value is None


def test_off_durations_also_from_file(tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text('[scoring]\ndecay_half_life = "off"\n[alerts]\ninactivity = "off"\nactivation = "3d"\n')
    c = load_config(path)
    assert c.scoring.decay_half_life_ms is None and c.alerts.inactivity_ms is None
    assert c.alerts.activation_ms == 3 * DAY


def test_weight_zero_means_tracked_but_unscored():
    c = load_config(overrides={"weights": {"like": 0}})
    assert "like" not in c.scoring.weights
    assert "like" in c.known_types
    assert c.scoring.weights["comment"] == 2


@pytest.mark.parametrize("weight", [1, 10])
def test_weight_scale_edges_are_allowed(weight):
    assert load_config(overrides={"weights": {"like": weight}}).scoring.weights["like"] == weight


def test_custom_weight_scale():
    c = load_config(overrides={"scoring": {"weight_max": 100}, "weights": {"like": 55}})
    assert (c.scoring.weight_max, c.scoring.weights["like"]) == (100, 55)


def test_custom_types_become_known():
    c = load_config(overrides={"weights": {"webinar_attended": 4}, "targets": {"webinar_attended": 2}})
    assert c.custom_types == {"webinar_attended"}
    assert c.known_types == SPEC_TYPES | {"webinar_attended"}
    assert c.is_known_type("webinar_attended")
    assert (c.scoring.weights["webinar_attended"], c.scoring.targets["webinar_attended"]) == (4, 2)
    # "all" includes custom types: a customer attending a webinar is active
    assert c.activity_types == (SPEC_TYPES - PASSIVE) | {"webinar_attended"}


def test_custom_type_with_weight_zero_is_known_but_unscored():
    c = load_config(overrides={"weights": {"webinar_attended": 0}})
    assert "webinar_attended" in c.known_types and "webinar_attended" not in c.scoring.weights
    assert c.custom_types == {"webinar_attended"}


def test_custom_types_may_be_listed_as_activity_and_aer_types():
    c = load_config(
        overrides={
            "weights": {"webinar_attended": 4},
            "targets": {"webinar_attended": 2},
            "activity": {"types": ["webinar_attended", "like"]},
            "aer": {"activity_types": ["points_earned", "webinar_attended"]},
        }
    )
    assert c.activity_types == {"webinar_attended", "like"}
    assert c.aer.activity_types == {"points_earned", "webinar_attended"}


def test_explicit_activity_list():
    c = load_config(overrides={"activity": {"types": ["like", "comment", "like"]}})
    assert c.activity_types == {"like", "comment"}


def test_label_lists_are_deduplicated_in_order():
    c = load_config(overrides={"kpis": {"features": ["search", "export", "search"], "segments": ["smb"]}})
    assert (c.kpis.features, c.kpis.segments) == (("search", "export"), ("smb",))


# --- every kind of bad value ------------------------------------------------------------------

ALL_ZERO_WEIGHTS = {name: 0 for name in tomllib.loads(DEFAULTS_TOML.read_text())["weights"]}

BAD = [
    # unknown keys
    ({"scorring": {"window": "30d"}}, "scorring"),
    ({"foo": 1}, "foo"),
    ({"scoring": {"windw": "30d"}}, "scoring.windw"),
    ({"alerts": {"inactivty": "off"}}, "alerts.inactivty"),
    ({"limits": {"max_bytes": 10}}, "limits.max_bytes"),
    # a table where a value is expected and the other way round
    ({"scoring": 5}, "scoring"),
    ({"weights": 3}, "weights"),
    ({"scoring": {"window": {"days": 30}}}, "scoring.window"),
    # wrong types
    ({"scoring": {"benchmark_cer": "500"}}, "scoring.benchmark_cer"),
    ({"scoring": {"benchmark_cer": True}}, "scoring.benchmark_cer"),
    ({"scoring": {"benchmark_cer": -1}}, "scoring.benchmark_cer"),
    ({"scoring": {"weight_min": 1.5}}, "scoring.weight_min"),
    ({"scoring": {"weight_min": 5, "weight_max": 3}}, "scoring.weight_max"),
    ({"tiers": {"excellent": "80"}}, "tiers.excellent"),
    ({"tiers": {"excellent": 101}}, "tiers.excellent"),
    ({"tiers": {"excellent": math.nan}}, "tiers.excellent"),
    ({"tiers": {"moderate": -1}}, "tiers.moderate"),
    ({"alerts": {"tier_downgrade": "yes"}}, "alerts.tier_downgrade"),
    ({"alerts": {"tier_downgrade": 1}}, "alerts.tier_downgrade"),
    ({"alerts": {"score_drop_percent": 150}}, "alerts.score_drop_percent"),
    ({"limits": {"max_event_bytes": 100}}, "limits.max_event_bytes"),
    ({"limits": {"max_event_bytes": 1024.0}}, "limits.max_event_bytes"),
    ({"limits": {"max_id_length": 4}}, "limits.max_id_length"),
    ({"limits": {"max_count": 0}}, "limits.max_count"),
    ({"limits": {"max_value": math.inf}}, "limits.max_value"),
    ({"kpis": {"max_lifespan_periods": 0}}, "kpis.max_lifespan_periods"),
    ({"kpis": {"features": ["search", ""]}}, "kpis.features"),
    ({"kpis": {"segments": "smb"}}, "kpis.segments"),
    ({"aer": {"reference_lines": {"saas": 120}}}, "aer.reference_lines.saas"),
    ({"aer": {"reference_lines": {"saas": "25"}}}, "aer.reference_lines.saas"),
    # bad durations
    ({"scoring": {"window": "30 days"}}, "scoring.window"),
    ({"scoring": {"window": "1.5d"}}, "scoring.window"),
    ({"scoring": {"window": "-1d"}}, "scoring.window"),
    ({"scoring": {"window": "0d"}}, "scoring.window"),
    ({"scoring": {"window": "30D"}}, "scoring.window"),
    ({"scoring": {"window": ""}}, "scoring.window"),
    ({"scoring": {"window": "off"}}, "scoring.window"),
    ({"scoring": {"window": 30.5}}, "scoring.window"),
    ({"scoring": {"window": True}}, "scoring.window"),
    ({"scoring": {"decay_half_life": "never"}}, "scoring.decay_half_life"),
    ({"scoring": {"decay_half_life": "0s"}}, "scoring.decay_half_life"),
    ({"time": {"max_future_skew": "soon"}}, "time.max_future_skew"),
    ({"time": {"allowed_lateness": -5}}, "time.allowed_lateness"),
    ({"alerts": {"inactivity": "never"}}, "alerts.inactivity"),
    ({"alerts": {"inactivity": "0d"}}, "alerts.inactivity"),
    ({"alerts": {"activation": "Off"}}, "alerts.activation"),
    # buckets and windows
    ({"scoring": {"bucket": "7h"}}, "scoring.bucket"),
    ({"scoring": {"bucket": "2d"}}, "scoring.bucket"),
    ({"scoring": {"bucket": "0s"}}, "scoring.bucket"),
    ({"scoring": {"window": "36h"}}, "scoring.window"),
    ({"scoring": {"bucket": "1h", "window": "90m"}}, "scoring.window"),
    ({"aer": {"window": "36h"}}, "aer.window"),
    ({"kpis": {"window": "12h"}}, "kpis.window"),
    ({"kpis": {"retention_period": "30d12h"}}, "kpis.retention_period"),
    ({"kpis": {"activation_period": "100h"}}, "kpis.activation_period"),
    ({"alerts": {"score_drop_window": "1h"}}, "alerts.score_drop_window"),
    # weights
    ({"weights": {"like": 11}}, "weights.like"),
    ({"weights": {"like": -1}}, "weights.like"),
    ({"weights": {"like": 1.5}}, "weights.like"),
    ({"weights": {"like": 1.0}}, "weights.like"),
    ({"weights": {"like": True}}, "weights.like"),
    ({"weights": {"like": "3"}}, "weights.like"),
    ({"scoring": {"weight_max": 5}, "weights": {"like": 6}}, "weights.like"),
    ({"weights": {"Webinar": 2}, "targets": {"Webinar": 1}}, "weights.Webinar"),
    ({"weights": {"web inar": 2}, "targets": {"web inar": 1}}, "weights.web inar"),
    ({"weights": {"webinar\n": 2}, "targets": {"webinar\n": 1}}, "weights.webinar\n"),
    ({"weights": ALL_ZERO_WEIGHTS}, "weights"),
    # targets
    ({"weights": {"webinar_attended": 4}}, "targets.webinar_attended"),
    ({"targets": {"webinar_attended": 2}}, "targets.webinar_attended"),
    ({"targets": {"like": 0}}, "targets.like"),
    ({"targets": {"like": -3}}, "targets.like"),
    ({"targets": {"like": "300"}}, "targets.like"),
    # relations between keys
    ({"tiers": {"moderate": 85}}, "tiers.moderate"),
    ({"tiers": {"moderate": 80.5}}, "tiers.moderate"),
    ({"tiers": {"excellent": 50}}, "tiers.moderate"),
    ({"aer": {"high_above": 10}}, "aer.high_above"),
    ({"aer": {"low_below": 30}}, "aer.high_above"),
    ({"aer": {"activity_types": ["points_earned", "bogus"]}}, "aer.activity_types"),
    ({"aer": {"activity_types": []}}, "aer.activity_types"),
    ({"aer": {"activity_types": "points_earned"}}, "aer.activity_types"),
    ({"activity": {"types": ["like", "bogus"]}}, "activity.types"),
    ({"activity": {"types": ["webinar_attended"]}}, "activity.types"),
    ({"activity": {"types": "everything"}}, "activity.types"),
    ({"activity": {"types": []}}, "activity.types"),
    ({"time": {"dedup_horizon": "12h"}}, "time.dedup_horizon"),
    ({"time": {"allowed_lateness": "3d"}}, "time.dedup_horizon"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[f"{i}-{k!r}" for i, (_, k) in enumerate(BAD)])
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_trailing_whitespace_in_a_duration_is_tolerated():
    assert load_config(overrides={"scoring": {"window": " 30d\n"}}).scoring.window_ms == 30 * DAY


def test_equal_tiers_and_bands_are_allowed():
    c = load_config(overrides={"tiers": {"excellent": 70, "moderate": 70}, "aer": {"low_below": 20, "high_above": 20}})
    assert (c.scoring.tier_excellent, c.scoring.tier_moderate, c.aer.low_below, c.aer.high_above) == (70, 70, 20, 20)


def test_dedup_horizon_equal_to_lateness_is_allowed():
    c = load_config(overrides={"time": {"allowed_lateness": "2d"}})
    assert c.time.allowed_lateness_ms == c.time.dedup_horizon_ms == 2 * DAY


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[scorring]\nwindow = "30d"\n', "scorring"),
        ('[scoring]\nwindw = "30d"\n', "scoring.windw"),
        ("[scoring]\nwindow = 30.5\n", "scoring.window"),
        ('[scoring]\nbucket = "5h"\n', "scoring.bucket"),
        ("[weights]\nlike = 0.5\n", "weights.like"),
        ("[weights]\nwebinar = 2\n", "targets.webinar"),
        ("[targets]\nwebinar = 2\n", "targets.webinar"),
        ("[tiers]\nmoderate = 90\n", "tiers.moderate"),
        ('[activity]\ntypes = ["like", "nope"]\n', "activity.types"),
        ('[time]\ndedup_horizon = "1h"\n', "time.dedup_horizon"),
        ("[weights.like]\nvalue = 2\n", "weights.like"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path, text, key):
    path = tmp_path / "engage.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)


@pytest.mark.parametrize("text", ["scoring = [\n", "[scoring\nwindow = 1\n", 'a = "unterminated\n', "[scoring]\nwindow = 30d\n"])
def test_invalid_toml_file(tmp_path, text):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "<file>"
    assert str(path) in str(info.value) and "TOML" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "<file>"
    assert str(path) in str(info.value) and "not found" in str(info.value)


def test_a_failed_load_does_not_change_later_defaults():
    with pytest.raises(ConfigError):
        load_config(overrides={"scoring": {"window": "36h"}})
    with pytest.raises(ConfigError):
        load_config(overrides={"weights": {"webinar": 2}})
    assert load_config().scoring.window_ms == 30 * DAY
    assert load_config().known_types == SPEC_TYPES


# --- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500), ("0ms", 0), ("1s", 1_000), ("10s", 10_000), ("90s", 90_000), ("5m", 300_000),
        ("1h", 3_600_000), ("36h", 129_600_000), ("1d", 86_400_000), ("30d", 2_592_000_000),
        ("2w", 1_209_600_000), (" 5 m ", 300_000), ("1500ms", 1_500), (0, 0), (10, 10_000), (3600, 3_600_000),
    ],
)
def test_parse_duration(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    "bad",
    ["", "5", "m", "5M", "5 min", "1.5h", "-1d", "+1d", "1d2h", "5y", "\u0665m", True, False, -1, 1.5, None, ["5m"]],
    ids=repr,
)
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"), (1, "1ms"), (500, "500ms"), (1_500, "1500ms"), (1_000, "1s"), (90_000, "90s"),
        (300_000, "5m"), (5_400_000, "90m"), (3_600_000, "1h"), (129_600_000, "36h"), (86_400_000, "1d"),
        (2_592_000_000, "30d"), (604_800_000, "1w"), (1_209_600_000, "2w"),
    ],
)
def test_format_duration(ms, text):
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    "ms", [0, 1, 999, 1_000, 1_001, 59_999, 60_000, 61_000, 3_599_999, 3_600_000, 86_400_000 + 1, 10 * 86_400_000,
           14 * 86_400_000, 365 * 86_400_000, 123_456_789_000]
)
def test_duration_round_trip(ms):
    assert parse_duration(format_duration(ms)) == ms


@pytest.mark.parametrize("text", ["500ms", "1s", "5m", "1h", "1d", "1w", "90s", "36h", "30d", "2w"])
def test_duration_text_round_trip(text):
    assert format_duration(parse_duration(text)) == text


def _dotted(mapping, prefix=""):
    """Every leaf key of a nested mapping, dotted (open tables' own keys included)."""
    keys = set()
    for key, value in mapping.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in ("weights", "targets", "aer.reference_lines"):
            keys |= _dotted(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


@pytest.mark.parametrize("overrides", [
    {},
    {"scoring": {"window": "14d", "decay_half_life": "off"}, "weights": {"like": 0, "webinar": 4},
     "targets": {"webinar": 2}, "alerts": {"inactivity": "off", "activation": "off"}},
    {"activity": {"types": ["like", "purchase"]}, "kpis": {"features": ["search"], "segments": ["smb"]},
     "aer": {"reference_lines": {}}, "limits": {"max_id_length": 64}, "tiers": {"excellent": 90.5}},
])
def test_the_printed_config_is_the_whole_config(overrides):
    """`engage config show` prints `config_mapping`: every key of the defaults, and building
    a config from what it prints gives the same config back."""
    config = load_config(overrides=overrides)
    shown = config_mapping(config)
    assert build_config(shown) == config
    assert _dotted(default_mapping()) <= _dotted(shown)
