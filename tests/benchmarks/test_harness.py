"""The benchmark harness runs end to end on a tiny input (targets are measured, never asserted here)."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import MODES, main

pytestmark = pytest.mark.services


def test_every_mode_measures_the_same_topic_and_reports(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_STACK_DIR", stack.directory)
    markdown = tmp_path / "RESULTS.md"
    assert main(["--events", "1500", "--customers", "150", "--naive-events", "500", "--out", str(tmp_path),
                 "--markdown", str(markdown), "--latency-seconds", "3", "--latency-rate", "300",
                 "--dormant", "300"]) == 0
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert set(report["results"]) == set(MODES)
    results = report["results"]
    for mode, result in results.items():
        expected = {"naive": 500, "latency": 1}.get(mode, 1500)
        assert result["events"] >= expected and result["seconds"] > 0, mode
    assert results["scorer"]["redis_bytes_per_customer"] > 0
    assert results["scorer"]["redis_bytes_per_dormant_member"] > 0   # a used_memory delta: noisy at 300 members
    assert 0 < results["scorer"]["dormant_record_memory_usage"] < results["scorer"]["redis_bytes_per_customer"]
    assert results["scale-out"]["workers"] == 2
    assert 0 < results["latency"]["p50_ms"] <= results["latency"]["p95_ms"] <= results["latency"]["p99_ms"]
    assert report["prefill_batched"]["messages"] < report["prefill"]["messages"] == 1500
    assert report["machine"]["commit"] and report["prefill"]["events"] == 1500
    table = markdown.read_text()
    assert "| scorer | 1,500 |" in table and "× framework ceiling" in table
    assert "| scorer-batched | 1,500 |" in table and "| p99 ≤ 100 ms at 80 % load |" in table


def test_quantile_interpolates_within_buckets_like_histogram_quantile():
    from benchmarks.run import quantile

    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.25) == pytest.approx(0.055)
    assert quantile(buckets, 0.99) == pytest.approx(0.982)
