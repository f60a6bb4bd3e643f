"""Misuse sweep: every bad setting, config key and flag stops the command with ONE line on stderr
that names it, and a non-zero exit code; nothing is contacted and no traceback is shown.

The sweep lists are checked against the real settings, config keys and click options, so a new
setting, key or flag cannot be added without a bad value here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.settings import ENV, FILE_ENV, SECRETS, Settings

# addresses nothing listens on: a command that got past validation would fail differently (exit 1)
BASE = {"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "redis://127.0.0.1:1"}

BAD_SETTINGS = {
    "kafka_bootstrap": "no-port",
    "redis_url": "localhost:6379",
    "redis_cluster": "maybe",
    "redis_sentinels": "sentinel-without-port",
    "redis_sentinel_master": "bad name!",
    "redis_min_replicas": "17",
    "redis_replica_timeout_s": "0",
    "app_id": "two words",
    "key_prefix": "a:b",
    "events_topic": "bad/topic",
    "dlq_topic": "",             # empty = unset; replaced below by a real bad value
    "scores_topic": "x" * 300,
    "alerts_topic": "é",
    "partitions": "0",
    "topic_replication": "three",
    "events_retention_ms": "5",
    "dlq_retention_ms": "-2",
    "alerts_retention_ms": "1e3",
    "web_host": "bad host",
    "web_port": "70000",
    "batch_size": "1.5",
    "batch_within_s": "-1",
    "consumption": "fast",
    "kpi_interval_s": "soon",
    "sweep_interval_s": "0",
    "alert_webhook_url": "ftp://hooks.example",
    "alert_webhooks": "cs=ftp://hooks.example",
    "alert_webhook_max_backoff_s": "nan",
    "alert_sink_port": "0",
    "stall_after_s": "1e9",
    "outbox_grace_s": "-1",
    "state_cache_customers": "-5",
    "api_processes": "0",
    "kafka_session_timeout_s": "2",
    "group_instance_id": "pod/1",
    "data_dir": "/etc/hostname/worker",   # beneath a regular file
    "kafka_security_protocol": "TLS",
    "kafka_sasl_mechanism": "GSSAPI",
    "kafka_username": "bad\x01user",
    "kafka_password": "p\x02ssword",
    "kafka_ssl_cafile": "/nonexistent/ca.pem",
    "redis_username": "bad\x01user",
    "redis_password": "p\x02ssword",
    "redis_ssl_ca_file": "/nonexistent/ca.pem",
    "api_token": "short",
    "api_write_token": "short",
    "metrics_auth": "maybe",
}
BAD_SETTINGS["dlq_topic"] = "has space"


def invoke(args: list[str], env: dict[str, str] | None = None, tmp: Path | None = None):
    """The CLI in-process, with no inherited ENGAGE_* variable and no local stack to fall back on."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGAGE_")}
    clean.update({"ENGAGE_STACK_DIR": str(tmp or "/nonexistent-stack"), **BASE, **(env or {})})
    return CliRunner().invoke(main, args, env=clean, catch_exceptions=False)


def one_line_naming(result, *names: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in result.output
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def test_the_sweep_covers_every_setting():
    assert set(BAD_SETTINGS) == {f.name for f in fields(Settings)}


@pytest.mark.parametrize("setting", sorted(BAD_SETTINGS))
def test_a_bad_setting_stops_the_worker_with_one_line_naming_it(setting):
    variable, value = ENV[setting], BAD_SETTINGS[setting]
    line = one_line_naming(invoke(["worker"], {variable: value}), variable)
    if setting in SECRETS:
        assert value not in line   # a secret is never echoed, not even a wrong one


def test_chunked_consumption_on_another_faust_version_stops_the_worker_naming_the_setting(monkeypatch, tmp_path):
    monkeypatch.setattr("streams.worker.kafka_transport.version", lambda package: "0.16.0")
    line = one_line_naming(invoke(["worker"], {"ENGAGE_DATA_DIR": str(tmp_path)}), "ENGAGE_CONSUMPTION", "0.16.0")
    assert "ENGAGE_CONSUMPTION=stock" in line


@pytest.mark.parametrize("setting", sorted(FILE_ENV))
def test_a_secret_file_that_cannot_be_read_is_named(setting, tmp_path):
    missing = one_line_naming(invoke(["worker"], {FILE_ENV[setting]: str(tmp_path / "nope")}), FILE_ENV[setting])
    assert str(tmp_path / "nope") in missing
    (tmp_path / "secret").write_text("a-valid-looking-secret-0123456789\n")
    both = invoke(["worker"], {FILE_ENV[setting]: str(tmp_path / "secret"), ENV[setting]: "x" * 20})
    one_line_naming(both, FILE_ENV[setting], ENV[setting])


# --- flags ------------------------------------------------------------------------------

# a bad value per flag that click itself cannot judge (plain strings); typed flags get "nope"
BAD_TEXT_FLAGS = {
    "--kafka": ("nope", "ENGAGE_KAFKA_BOOTSTRAP"),
    "--redis": ("localhost:6379", "ENGAGE_REDIS_URL"),
    "--topic-prefix": ("a b.", "--topic-prefix"),
    "--app-id": ("two words", "ENGAGE_APP_ID"),
    "--key-prefix": ("a{b}", "ENGAGE_KEY_PREFIX"),
    "--url": ("ftp://x", "ENGAGE_ALERT_WEBHOOK_URL"),
    "--history": ("soon", "--history"),
    "--id-prefix": ("a{", "--id-prefix"),
    "--id": ("a{", "--id"),
}
POSITIONAL = {("score",): ["someone"], ("config", "check"): ["defaults.toml"],
              ("import",): [__file__, "--id", "an-import"]}           # any readable file


def commands(group: click.Group = main, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def flag_cases():
    for path, command in commands():
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag:
                continue
            flag = param.opts[0]
            if isinstance(param.type, click.types.StringParamType):
                value, named = BAD_TEXT_FLAGS[flag]      # KeyError: a new text flag needs a bad value here
            else:
                value, named = "nope", flag
            yield pytest.param(path, flag, value, named, id=f"{' '.join(path)} {flag}")


@pytest.mark.parametrize(("path", "flag", "value", "named"), list(flag_cases()))
def test_a_bad_flag_value_is_one_line_naming_it(path, flag, value, named):
    args = [*path, *POSITIONAL.get(path, []), flag, value]
    one_line_naming(invoke(args), named)


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=" ".join)
def test_an_unknown_flag_is_one_line_naming_it(path):
    one_line_naming(invoke([*path, *POSITIONAL.get(path, []), "--frobnicate"]), "--frobnicate")


def test_an_unknown_command_is_one_line_naming_it():
    one_line_naming(invoke(["frobnicate"]), "frobnicate")


# --- config keys --------------------------------------------------------------------------

DEFAULTS = tomllib.loads((Path(__file__).parents[2] / "scoring" / "defaults.toml").read_text())
OPEN_TABLES = {"weights", "targets", "aer.reference_lines", "scorecards", "mapping", "measures", "traits"}  # custom


def leaf_keys(table: dict, prefix: str = ""):
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and dotted not in OPEN_TABLES:
            yield from leaf_keys(value, f"{dotted}.")
        else:
            yield dotted, value


def bad_toml(dotted: str, default: object) -> str:
    if isinstance(default, bool):
        bad = '"maybe"'
    elif isinstance(default, (int, float)):
        bad = '"bogus"'
    elif isinstance(default, str):
        bad = '"soon-ish"'
    elif isinstance(default, list):
        bad = "5"
    else:                                # an open table
        bad = '"not a table"'
    section, _, key = dotted.rpartition(".")
    return f"[{section}]\n{key} = {bad}\n" if section else f"{key} = {bad}\n"


@pytest.mark.parametrize(("dotted", "default"), list(leaf_keys(DEFAULTS)), ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_config_value_stops_any_command_with_one_line_naming_the_key(dotted, default, tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text(bad_toml(dotted, default))
    one_line_naming(invoke(["--config", str(path), "worker"]), f"'{dotted}'")


@pytest.mark.parametrize("section", sorted(k for k in DEFAULTS if k not in OPEN_TABLES))
def test_an_unknown_config_key_is_named(section, tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text(f"[{section}]\nfrobnicate = 1\n")
    one_line_naming(invoke(["--config", str(path), "worker"]), f"'{section}.frobnicate'", "unknown key")


@pytest.mark.parametrize(("toml", "key"), [
    ("[scorecards]\nenterprise = 1\n", "scorecards.enterprise"),
    ("[scorecards.enterprise]\nfrobnicate = 1\n", "scorecards.enterprise.frobnicate"),
    ("[scorecards.enterprise.weights]\nteleport = 3\n", "scorecards.enterprise.weights.teleport"),
    ("[scorecards.enterprise.weights]\nlike = 99\n", "scorecards.enterprise.weights.like"),
    ("[scorecards.enterprise.targets]\nlike = -1\n", "scorecards.enterprise.targets.like"),
    ("[scorecards.enterprise.tiers]\nmoderate = 90\n", "scorecards.enterprise.tiers.moderate"),
    ('[mapping]\n"Plan Upgraded" = "teleport"\n', 'mapping."Plan Upgraded".type'),
    ('[mapping]\n"Plan Upgraded" = 3\n', 'mapping."Plan Upgraded"'),
    ('[mapping."Plan Upgraded"]\ntype = "conversion"\nmrr = "properties.mrr"\n', 'mapping."Plan Upgraded".mrr'),
    ('[mapping."Plan Upgraded"]\ntype = "conversion"\nvalue = "properties..mrr"\n', 'mapping."Plan Upgraded".value'),
    ("[measures]\nnps = 1\n", "measures.nps"),
    ('[measures.nps]\nkind = "median"\ntype = "nps_response"\nweight = 2\n', "measures.nps.kind"),
    ('[measures.nps]\nkind = "average"\ntype = "teleport"\nweight = 2\nlinear = [0, 10]\n', "measures.nps.type"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 99\nlinear = [0, 10]\n',
     "measures.nps.weight"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 2\n', "measures.nps.linear"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 2\nlinear = [5, 5]\n', "measures.nps.linear"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 2\nranges = [[9, 100], [7, 50]]\n',
     "measures.nps.ranges"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 2\nranges = [[0, 120]]\n', "measures.nps.ranges"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 2\nlinear = [0, 10]\nmissing = "zero"\n',
     "measures.nps.missing"),
    ('[measures.nps]\nkind = "average"\ntype = "nps_response"\nweight = 2\nlinear = [0, 10]\ntarget = 3\n',
     "measures.nps.target"),
    ('[measures.tickets]\nkind = "penalty"\ntype = "ticket_opened"\nweight = 2\n', "measures.tickets.target"),
    ('[measures.tickets]\nkind = "penalty"\ntype = "like"\nweight = 2\ntarget = 3\n', "measures.tickets.type"),
    ('[scorecards.enterprise.measures.tickets]\nkind = "penalty"\ntype = "ticket_opened"\nweight = 2\ntarget = 0\n',
     "scorecards.enterprise.measures.tickets.target"),
])
def test_a_bad_segment_scorecard_or_track_event_mapping_is_named(toml, key, tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text(toml)
    one_line_naming(invoke(["--config", str(path), "worker"]), f"'{key}'")


def test_an_unreadable_config_is_one_line(tmp_path):
    path = tmp_path / "engage.toml"
    path.write_text("[scoring\nwindow = ")
    one_line_naming(invoke(["--config", str(path), "worker"]), str(path))
    one_line_naming(invoke(["--config", str(tmp_path / "missing.toml"), "worker"]), "missing.toml")


# --- the real process: stderr, exit code, nothing contacted --------------------------------


@pytest.mark.parametrize(("cli", "args", "env", "named"), [
    ("streams.cli", ["worker"], {"ENGAGE_WEB_PORT": "http"}, "ENGAGE_WEB_PORT"),
    ("streams.cli", ["alert-sink", "--url", "http://x"], {"ENGAGE_ALERT_SINK_PORT": "0"}, "ENGAGE_ALERT_SINK_PORT"),
    ("devstack.cli", ["generate", "--count", "-5"], {}, "--count"),
    ("streams.cli", ["replay", "--key-prefix", "a:b"], {}, "--key-prefix"),
])
def test_the_engage_process_prints_one_line_and_exits_2(cli, args, env, named):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    out = subprocess.run([sys.executable, "-m", cli, *args], capture_output=True, text=True, timeout=60,
                         env={**clean, **BASE, "ENGAGE_STACK_DIR": "/nonexistent-stack", **env})
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and named in out.stderr, out.stderr


def test_an_unreachable_service_is_one_line_naming_it_not_a_traceback():
    result = invoke(["score", "someone"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: Redis:") and "ENGAGE_REDIS_URL" in lines[0]
