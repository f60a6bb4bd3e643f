"""The README documents every config key, rejection reason and KPI function."""

from __future__ import annotations

import inspect
import pathlib

from scoring import kpis
from scoring.config import default_mapping
from scoring.reasons import Reason

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()


def dotted_keys(table, prefix=""):
    for key, value in table.items():
        if prefix in ("weights.", "targets.") or prefix.startswith("aer.reference_lines"):
            continue
        if isinstance(value, dict) and key != "reference_lines":
            yield from dotted_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_readme_starts_with_the_two_commands():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["./engage demo", "./scripts/test"]
    ci = (pathlib.Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "exec ./scripts/test" in ci


def test_every_config_key_is_in_the_configuration_table():
    keys = list(dotted_keys(default_mapping()))
    assert len(keys) > 30
    missing = [k for k in keys if f"`{k}`" not in README]
    assert missing == []


def test_every_rejection_reason_is_documented():
    assert [r.value for r in Reason if f"| `{r.value}` |" not in README] == []


def test_every_public_kpi_function_is_named_in_the_readme():
    names = [n for n, f in inspect.getmembers(kpis, inspect.isfunction)
             if f.__module__ == kpis.__name__ and not n.startswith("_")]
    assert len(names) > 25
    missing = [n for n in names if n not in README]
    assert missing == []


def test_every_metric_is_in_the_metrics_table():
    from prometheus_client import CollectorRegistry

    from streams.metrics import KPI_GAUGES, PREFIX, Metrics, SinkMetrics

    metrics = Metrics({"saas": 25.0}, CollectorRegistry())
    names = {m.name for m in metrics.registry.collect() if m.name.startswith(PREFIX)}
    names |= {m.name for m in SinkMetrics().registry.collect()}
    names |= {PREFIX + g.name for g in KPI_GAUGES}
    names |= {PREFIX + n for n in ("kpi_as_of_timestamp_seconds", "aer_band", "aer_reference_percent",
                                   "customers_by_tier", "feature_usage_percent")}
    assert len(names) > 50
    missing = sorted(n for n in names if f"`{n}`" not in README and f"`{n}_total`" not in README)
    assert missing == []


def test_every_runtime_setting_is_documented():
    from streams.settings import ENV

    assert [v for v in ENV.values() if v not in README] == []
