"""Alert routes ([alerts.routes]): parsed with every key checked, the first matching route takes an
alert, a route's hourly limit; hand-worked."""

from __future__ import annotations

import pytest

from scoring.alert_routes import HOUR_MS, AlertRoute, next_digest, route_for, within_limit
from scoring.config import ConfigError, load_config


def routes(**table) -> tuple[AlertRoute, ...]:  # type: ignore[no-untyped-def]
    return load_config(overrides={"alerts": {"routes": table}}).alerts.routes


def test_routes_are_read_in_name_order_with_empty_filters_meaning_any():
    found = routes(zz_rest={"webhook": "cs-all"},
                   enterprise={"webhook": "cs-ent", "segments": ["enterprise"], "max_per_hour": 20},
                   ana={"webhook": "ana-dm", "owners": ["ana"], "rules": ["inactive", "not_activated"]})
    assert [r.name for r in found] == ["ana", "enterprise", "zz_rest"]
    assert found[1] == AlertRoute("enterprise", "cs-ent", (), ("enterprise",), (), 20)
    assert load_config().alerts.routes == ()


@pytest.mark.parametrize(("table", "key"), [
    ({"x": {}}, "alerts.routes.x.webhook"),
    ({"x": {"webhook": "Has Spaces"}}, "alerts.routes.x.webhook"),
    ({"x": {"webhook": "a", "rule": ["inactive"]}}, "alerts.routes.x.rule"),
    ({"x": {"webhook": "a", "rules": ["churned"]}}, "alerts.routes.x.rules"),
    ({"x": {"webhook": "a", "segments": "enterprise"}}, "alerts.routes.x.segments"),
    ({"x": {"webhook": "a", "owners": [""]}}, "alerts.routes.x.owners"),
    ({"x": {"webhook": "a", "max_per_hour": -1}}, "alerts.routes.x.max_per_hour"),
    ({"x": {"webhook": "a", "max_per_hour": 2.5}}, "alerts.routes.x.max_per_hour"),
    ({"Bad Name": {"webhook": "a"}}, "alerts.routes.Bad Name"),
    ({"x": "cs"}, "alerts.routes.x")])
def test_a_bad_route_stops_loading_naming_its_key(table, key):
    with pytest.raises(ConfigError) as caught:
        routes(**table)
    assert f"'{key}'" in str(caught.value)


def test_the_first_route_whose_filters_all_match_takes_the_alert():
    found = routes(a_ana={"webhook": "ana-dm", "owners": ["ana"], "rules": ["inactive"]},
                   b_enterprise={"webhook": "cs-ent", "segments": ["enterprise"]})
    assert route_for(found, "inactive", "enterprise", "ana").name == "a_ana"
    assert route_for(found, "score_drop", "enterprise", "ana").name == "b_enterprise"    # a_ana: not its rule
    assert route_for(found, "inactive", None, "ana").name == "a_ana"
    assert route_for(found, "score_drop", "smb", "ana") is None                          # the default webhook
    assert route_for(found, "score_drop", None, None) is None


def test_a_route_sends_at_most_its_limit_in_any_hour():
    route, sent = AlertRoute("r", "w", max_per_hour=2), []
    assert [within_limit(route, sent, t) for t in (0, 10, 20)] == [True, True, False]
    assert within_limit(route, sent, HOUR_MS) is True          # the first send left the hour
    assert within_limit(route, sent, HOUR_MS + 5) is False
    unlimited = AlertRoute("u", "w")
    assert all(within_limit(unlimited, [], t) for t in range(100))


def test_a_digest_route_is_due_once_a_day_at_its_time_and_takes_no_hourly_limit():
    (route,) = routes(daily={"webhook": "cs", "digest": "09:30"})
    assert route.digest_minute == 9 * 60 + 30 and route.to_table()["digest"] == "09:30"
    day = 20_000 * 24 * HOUR_MS                                         # a UTC midnight
    assert next_digest(route, day) == day + 9 * HOUR_MS + 30 * 60_000
    assert next_digest(route, day + 9 * HOUR_MS + 30 * 60_000) == day + 33 * HOUR_MS + 30 * 60_000   # strictly after
    for bad in ("9:30", "24:00", "09:60", 930):
        with pytest.raises(ConfigError, match="alerts.routes.daily.digest"):
            routes(daily={"webhook": "cs", "digest": bad})
    with pytest.raises(ConfigError, match="alerts.routes.daily.max_per_hour"):
        routes(daily={"webhook": "cs", "digest": "09:30", "max_per_hour": 5})
