"""The engage CLI: demo output, config check/show, and errors that name the key."""

from __future__ import annotations

import re

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from devstack.cli import main   # the checkout's engage: the product's commands and demo, stack, generate


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_demo_prints_progress_kpis_leaderboards_and_outcomes():
    result = run("demo", "--offline", "--events", "3000", "--customers", "120", "--accounts", "12", "--days", "6")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Scoring 3,000 generated events for 120 customers over 6 simulated days" in out
    status_lines = [line for line in out.splitlines() if line[:4] == "2026" and len(line.split()) == 10]
    assert len(status_lines) >= 6                       # one per simulated day, plus the final one
    for name in ("Active Engagement Rate", "DAU / WAU / MAU", "NPS / CSAT / CES", "ARPU / ATV / CLV",
                 "Top customers", "Bottom customers", "Top accounts", "breakdown by event type"):
        assert name in out
    outcomes = next(line for line in out.splitlines() if line.startswith("Outcomes:"))
    assert "accepted" in outcomes and "rejected:" in outcomes


def test_demo_is_reproducible_for_a_seed():
    args = ("demo", "--offline", "--events", "1500", "--customers", "50", "--days", "3", "--seed", "42")
    assert run(*args).output == run(*args).output
    assert run(*args).output != run(*args[:-1], "43").output


def test_config_check_accepts_a_good_file_and_names_the_bad_key(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_text('[scoring]\nwindow = "14d"\n[weights]\nwebinar = 4\n[targets]\nwebinar = 2\n')
    ok = run("config", "check", str(good))
    assert ok.exit_code == 0 and ok.output.strip() == f"{good}: ok"

    bad = tmp_path / "bad.toml"
    bad.write_text('[scoring]\nwindow = "soon"\n')
    result = run("config", "check", str(bad))
    assert result.exit_code == 2
    assert "config key 'scoring.window'" in result.output

    typo = tmp_path / "typo.toml"
    typo.write_text("[alerts]\ninactivty = '3d'\n")
    result = run("config", "check", str(typo))
    assert result.exit_code == 2 and "config key 'alerts.inactivty': unknown key" in result.output

    missing = run("config", "check", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "not found" in missing.output


def test_a_bad_global_config_stops_any_command_before_it_starts(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[tiers]\nmoderate = 90\n")
    result = run("--config", str(bad), "demo", "--offline", "--events", "10")
    assert result.exit_code == 2
    assert "config key 'tiers.moderate'" in result.output
    assert "Scoring" not in result.output
    via_env = run("demo", "--offline", "--events", "10", env={"ENGAGE_CONFIG": str(bad)})
    assert via_env.exit_code == 2 and "tiers.moderate" in via_env.output


def test_config_show_reflects_overrides(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('[scoring]\nwindow = "14d"\ndecay_half_life = "off"\n[weights]\nlike = 0\n')
    shown = json.loads(run("--config", str(path), "config", "show").output)
    assert shown["scoring"]["window"] == "2w"
    assert shown["scoring"]["decay_half_life"] == "off"
    assert shown["weights"]["like"] == 0 and shown["weights"]["follow"] == 3      # tracked, not scored
    assert {"kpis", "alerts", "limits"} <= set(shown) and shown["aer"]["reference_lines"]["saas"] == 25
    assert shown["scoring"]["weight_max"] == 10 and shown["derived"]["retention"] == "45d"   # 14 d window + 30 d history + a bucket


def test_bad_flag_value_is_a_usage_error():
    result = run("demo", "--events", "0")
    assert result.exit_code == 2 and "--events" in result.output


def test_console_script_is_installed_and_runs():
    exe = shutil.which("engage", path=os.path.dirname(sys.executable))
    assert exe, "the engage console script is not installed next to the interpreter"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "worker" in out.stdout and "config" in out.stdout
    assert "demo" not in out.stdout and "stack" not in out.stdout   # the installed engage: the product's commands


@pytest.mark.services
def test_live_demo_runs_the_pipeline_on_the_local_stack(stack_view, monkeypatch):
    """`engage demo` (the README's main command) against the session's stack."""
    monkeypatch.setenv("ENGAGE_STACK_DIR", str(stack_view))
    result = run("demo", "--duration", "4", "--rate", "50", "--backfill", "300", "--customers", "40")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Worker ready: API http://127.0.0.1:" in out and "/metrics" in out
    final = out.rsplit("Live engagement KPIs", 1)[1]
    consumed = int(final.split("consumed ", 1)[1].split()[0].replace(",", ""))
    assert consumed >= 300                                  # the backfill went through Kafka and the worker
    for name in ("Active Engagement Rate", "DAU / WAU / MAU", "Top customers", "Bottom customers"):
        assert name in final
    assert "The stack keeps running" in out
    # what a CS team does with it: Segment-spec input, a scorecard of measures, traits, an alert worked
    assert "Live traffic as Segment-spec messages" in out and "scoring config: " in out and "demo.toml" in out
    scorecard = out.split("Scorecard of ", 1)[1]
    assert all(f"\n{name} " in scorecard for name in ("tickets", "nps", "adoption")) and "traits: " in scorecard
    assert re.search(r"account \S+: ES \d+\.\d \(\w+\) over \d+ users, weighted by their ARR", scorecard)
    assert re.search(r"Alert [0-9a-f]+ \(\w+ for \S+\) is acknowledged by demo", out)


def test_import_check_reports_every_line_it_would_leave_out_and_sends_nothing(tmp_path):
    """`engage import --check` reads the file as the import would, with no broker at all."""
    history = tmp_path / "history.jsonl"
    good = {"event_id": "h1", "customer_id": "c1", "type": "like", "ts": "2026-10-01T10:00:00Z"}
    history.write_text("\n".join([json.dumps(good), "{oops", json.dumps({**good, "event_id": "h2", "type": "member_left"}),
                                  json.dumps({**good, "event_id": "h3", "count": 2}), json.dumps(good)]) + "\n")
    result = run("import", str(history), "--id", "q3", "--check", env={"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert result.exit_code == 1
    assert "line 2: malformed_json" in result.stderr and "line 3: not_importable (type)" in result.stderr
    assert "line 5: duplicate: event 'h1' is on line 1 too" in result.stderr
    assert "import 'q3': 2 events would be sent as history (--check: nothing sent), 3 lines not sent" in result.stderr
    daily = tmp_path / "daily.csv"
    daily.write_text("customer_id,date,type,count,value\nc1,2026-10-01,purchase,2,80\nc2,2026-10-02,like,30,\n")
    result = run("import", str(daily), "--id", "d1", "--format", "daily", "--check")
    assert result.exit_code == 0 and "2 events would be sent" in result.stderr
