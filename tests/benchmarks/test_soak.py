"""The soak script (benchmarks/soak.py) on a short run: samples, the loss ledger and the summary."""

from __future__ import annotations

import pytest

from benchmarks.soak import growth_percent, markdown, soak


@pytest.mark.services
@pytest.mark.bench
def test_a_short_soak_samples_memory_and_proves_zero_loss(stack):
    report = soak(minutes=0.25, rate=200, customers=100, sample_s=2, flat_percent=50.0, running=stack, log=print,
                  drain_s=300, warmup_s=4)
    samples = report["samples"]
    assert len(samples) >= 5
    assert all(s["worker_rss_mb"] > 20 and s["redis_used_mb"] > 0 for s in samples)
    loss = report["loss"]
    assert loss["messages_written"] == 200 * 19 == loss["messages_consumed"] == loss["events_consumed"]
    assert loss["events_accounted"] == loss["events_consumed"] and loss["rejected"] == loss["dlq_messages"] > 0
    assert report["drained"] is True and report["zero_loss"] is True
    # 200 events/s of 100 customers: the worker keeps up, never 10 s of traffic waiting
    peak = max(s.get("engagement_consumer_lag", 0) for s in samples if s["t"] >= (4 + samples[-1]["t"]) / 2)
    assert report["second_half_peak_lag"] == peak < 2000 and report["kept_up"] is True
    text = markdown(report)
    assert "zero loss" in text and "| seconds | worker RSS MB |" in text and "flat: the worker kept up" in text
    assert report["no_reassignment"] is True and "no reassignment" in text and "Warm-up" in text
    assert "NOT flat: more" in markdown({**report, "second_half_peak_lag": 2001, "kept_up": False})


def test_the_soak_config_scales_every_span_that_sets_the_retention_to_minutes():
    """The calibration warms up for one retention: a span left at its default (as `history.horizon`,
    30 days, once was) makes a warm-up of a month, which the generator refuses."""
    from benchmarks.soak import CONFIG
    from scoring.config import load_config

    assert load_config(CONFIG).retention_ms <= 20 * 60_000


def test_growth_is_measured_over_the_second_half():
    samples = [{"t": t, "m": m} for t, m in [(0, 10.0), (10, 50.0), (20, 100.0), (30, 100.0), (40, 110.0)]]
    assert growth_percent(samples, "m") == pytest.approx(10.0)     # 100 -> 110 after the warm-up
    assert growth_percent(samples[:1], "m") == 0.0
    # after a warm-up of 20: the second half of 20..40 starts at 30
    assert growth_percent(samples, "m", since=20) == pytest.approx(10.0)
    assert growth_percent(samples, "m", since=36) == pytest.approx(0.0)    # only the last sample: no growth


@pytest.mark.services
@pytest.mark.bench
def test_calibration_measures_what_one_worker_sustains_on_the_soak_workload(stack):
    from benchmarks.soak import calibrate

    rate = calibrate(stack, customers=100, warmup_s=5, measure_s=5, share=0.8, log=print)
    assert 10 < rate < 1_000_000
