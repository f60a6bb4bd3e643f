"""Alerting rules and configs, checked by the real promtool and amtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.processes import ensure_binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "engagement.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "tests" / "engagement.rules.test.yml"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_binary("promtool", "prometheus")


def test_promtool_rule_unit_tests_pass(promtool):
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config_and_rules(promtool):
    config = run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run(promtool, "check", "rules", str(RULES))
    assert rules.returncode == 0 and "9 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_every_rule_is_shown_to_fire_and_to_stay_quiet():
    alerts = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert set(alerts) == {"ActiveEngagementRateLow", "NpsDrop", "NoEventsReceived", "ConsumerLagHigh",
                           "WorkerDown", "DeadLetterRateHigh", "RedisOutOfMemory", "RedisReplicasBehind",
                           "OutboxBacklog"}
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in alerts:
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert} never shown to fire"
        assert any(not c["exp_alerts"] for c in mine), f"{alert} never shown to stay quiet"


def test_a_broken_rule_test_really_fails(promtool, tmp_path):
    """The unit tests can fail: expecting AER to fire at 15 % is refused by promtool."""
    broken = yaml.safe_load(RULE_TESTS.read_text())
    broken["rule_files"] = [str(RULES)]
    quiet_case = broken["tests"][1]["alert_rule_test"][0]
    quiet_case["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    path = tmp_path / "broken.test.yml"
    path.write_text(yaml.safe_dump(broken))
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


def test_alertmanager_config_is_valid():
    amtool = ensure_binary("amtool", "prometheus-alertmanager")
    result = run(amtool, "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 receivers" in result.stdout and "1 inhibit rules" in result.stdout
