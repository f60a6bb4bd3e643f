"""Runtime settings: defaults, precedence, and errors that name the variable."""

from __future__ import annotations

import pytest

from streams.settings import SettingsError, load_settings

BASE = {"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "ENGAGE_REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_defaults_and_env():
    s = load_settings(env=BASE)
    assert (s.kafka_bootstrap, s.redis_url, s.events_topic, s.partitions, s.web_port) == (
        "127.0.0.1:9092", "redis://127.0.0.1:6379/0", "engagement.events", 4, 6066)
    s = load_settings(env={**BASE, "ENGAGE_BATCH_SIZE": "250", "ENGAGE_KPI_INTERVAL_S": "0.5"})
    assert (s.batch_size, s.kpi_interval_s) == (250, 0.5)


def test_flags_win_over_env_and_kafka_scheme_is_accepted():
    s = load_settings({"web_port": 7000, "kafka_bootstrap": "kafka://h1:1,h2:2"}, env={**BASE, "ENGAGE_WEB_PORT": "8000"})
    assert s.web_port == 7000 and s.kafka_bootstrap == "h1:1,h2:2"


@pytest.mark.parametrize(("variable", "value"), [
    ("ENGAGE_WEB_PORT", "70000"),
    ("ENGAGE_WEB_PORT", "http"),
    ("ENGAGE_PARTITIONS", "0"),
    ("ENGAGE_BATCH_SIZE", "1.5"),
    ("ENGAGE_BATCH_WITHIN_S", "-1"),
    ("ENGAGE_REDIS_URL", "localhost:6379"),
    ("ENGAGE_KAFKA_BOOTSTRAP", "no-port"),
    ("ENGAGE_EVENTS_TOPIC", "bad topic"),
    ("ENGAGE_KEY_PREFIX", "a{b}"),
    ("ENGAGE_KEY_PREFIX", "a:b"),
])
def test_a_bad_value_names_its_variable(variable, value):
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, variable: value})
    assert err.value.name == variable and variable in str(err.value)


def test_missing_addresses_without_a_stack_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_STACK_DIR", str(tmp_path / "none"))
    with pytest.raises(SettingsError) as err:
        load_settings(env={})
    assert "ENGAGE_KAFKA_BOOTSTRAP" in str(err.value) and "engage stack up" in str(err.value)


def test_topic_retention_settings_reach_the_topic_specs():
    from streams.topics import topic_specs

    s = load_settings(env={**BASE, "ENGAGE_EVENTS_RETENTION_MS": "86400000", "ENGAGE_PARTITIONS": "8"})
    specs = {spec.name: spec for spec in topic_specs(s)}
    events = specs["engagement.events"]
    assert events.partitions == 8 and events.config["retention.ms"] == "86400000"
    assert events.config["message.timestamp.type"] == "LogAppendTime"
    assert specs["engagement.scores"].config["cleanup.policy"] == "compact"
    assert specs["engagement.events.dlq"].config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, "ENGAGE_DLQ_RETENTION_MS": "5"})
    assert err.value.name == "ENGAGE_DLQ_RETENTION_MS"
