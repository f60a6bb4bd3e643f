"""The benchmark harness runs end to end on a tiny input (targets are measured, never asserted here)."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import MODES, READ_PATHS, main

pytestmark = pytest.mark.services


@pytest.mark.bench
def test_every_mode_measures_and_reports(stack, stack_view, tmp_path, monkeypatch):
    from devstack import stack as local

    monkeypatch.setenv("ENGAGE_STACK_DIR", str(stack_view))
    markdown = tmp_path / "RESULTS.md"
    try:
        assert main(["--events", "1500", "--customers", "150", "--naive-events", "500", "--out", str(tmp_path),
                     "--markdown", str(markdown), "--latency-seconds", "3", "--latency-rate", "300",
                     "--dormant", "300", "--core-customers", "150", "--read-customers", "200", "--read-requests",
                     "20", "--read-computed-requests", "5", "--read-rate", "100"]) == 0
    finally:
        local.cluster_down(stack_view, purge=True)   # the Redis Cluster `scorer-cluster` added to the view
        local.sentinel_down(stack_view, purge=True)  # the primary and replica of the `*-replica*` modes
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert set(report["results"]) == set(MODES)
    results = report["results"]
    for mode, result in results.items():
        expected = {"naive": 500, "latency": 1, "read": 20 * len(READ_PATHS)}.get(mode, 1500)
        assert result["events"] >= expected and result["seconds"] > 0, mode

    # the core, in memory: both paths accept the same events and know the same customers; and the
    # worker, fed the same generator traffic through Kafka, stored exactly those customers
    core = results["core"]
    assert core["events"] == 1500 and core["settle_seconds"] > 0
    assert 0 < core["settle_accepted"] == core["accepted"] < 1500       # duplicates, late and malformed refused
    assert core["settle_customers"] == core["customers"] <= core["settle_deltas"]
    scorer = results["scorer"]
    assert scorer["customers"] == core["customers"]
    # both builds of the core, measured alike: the same work, each run by the build it names
    interpreted = results["core-interpreted"]
    assert (core["build"], interpreted["build"]) == ("compiled", "interpreted: ENGAGE_CORE=interpreted")
    assert (interpreted["accepted"], interpreted["settle_deltas"]) == (core["accepted"], core["settle_deltas"])
    assert results["scorer-interpreted"]["customers"] == scorer["customers"]

    # a replica waited for (WAIT on the primary) in the modes that ask for one, never in the others
    for mode, waits in (("scorer-replica0", False), ("scorer-replica1", True), ("scorer-batched-replica0", False),
                        ("scorer-batched-replica1", True)):
        assert results[mode]["customers"] == scorer["customers"], mode
        assert (results[mode].get("redis_calls_wait_per_event", 0) > 0) is waits, mode

    # the outbox's cost: the same batches with and without recording outputs, outputs really recorded
    outbox = results["outbox"]
    assert outbox["seconds_without"] > 0 and outbox["batches"] > 0 and outbox["outputs_per_batch"] > 1

    # Redis's work per event from its own counters: the writes are scripts, and bytes reach Redis
    assert scorer["redis_cpu_us_per_event"] > 0 and scorer["redis_bytes_in_per_event"] > 100
    assert scorer["redis_commands_per_event"] > scorer["redis_scripts_per_event"] > 0

    # memory: every key of the worker's prefix, and dormant members built and swept through BatchWriter
    assert scorer["redis_bytes_per_customer"] > scorer["redis_bytes_per_customer_own_keys"] > 0
    assert scorer["redis_bytes_per_customer_f"] > 0 and scorer["redis_bytes_shared_per_customer"] > 0
    assert scorer["redis_bytes_per_dormant_member"] > 0   # a used_memory delta: noisy at 300 members
    assert scorer["dormant_members_indexed"] == 300 and scorer["dormant_due_now"] == 0
    keys = scorer["dormant_member_keys"]
    assert keys["record"] > 0 and scorer["dormant_record_buckets"] == 0   # the sweep evicted the buckets
    assert 0 < scorer["dormant_record_memory_usage"] < scorer["redis_bytes_per_customer"]

    # reads: every customer written, a worker consuming while they were timed
    read = results["read"]
    assert read["customers"] == 200 and read["populate_events"] >= 200
    assert read["consumed_during_reads"] > 0
    for name in (f"{tag}{path}" for tag in ("", "api_") for path in READ_PATHS):   # the worker, engage api
        assert 0 < read[f"{name}_p50_ms"] <= read[f"{name}_p95_ms"] <= read[f"{name}_p99_ms"] <= read[f"{name}_max_ms"]
    assert (read["lookup_requests"], read["computed_requests"]) == (20, 5)
    assert read["slow_span_seconds"] > 0 and 0 <= read["slow_busy_share"] < 1     # Redis's slow log over the lookups

    assert results["scale-out"]["workers"] == 2
    assert results["scorer-cluster"]["customers"] == core["customers"]     # the same state, on the cluster
    assert 0 < results["latency"]["p50_ms"] <= results["latency"]["p95_ms"] <= results["latency"]["p99_ms"]
    assert report["prefill_batched"]["messages"] < report["prefill"]["messages"] == 1500
    assert report["machine"]["commit"] and report["prefill"]["events"] == 1500
    table = markdown.read_text()
    assert "Redis CPU ≤ 8 µs per event" in table and "one Redis core, this layout's work" in table
    assert "| scorer | 1,500 |" in table and "× framework ceiling" in table
    assert "| scorer-batched | 1,500 |" in table and "| p99 ≤ 100 ms at 80 % load |" in table
    assert "| core | 1,500 |" in table and "| core-settle | 1,500 |" in table
    assert "| core: `Scorer.process_batch` ≥ 100,000 events/s |" in table
    assert "| `GET /kpis` | `engage api` |" in table and "at 200 customers |" in table


def test_the_core_mode_needs_no_services(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGAGE_STACK_DIR", str(tmp_path / "no-stack"))   # would be started if it were needed
    markdown = tmp_path / "RESULTS.md"
    assert main(["--modes", "core,core-interpreted", "--events", "300", "--core-customers", "50", "--out",
                 str(tmp_path), "--markdown", str(markdown)]) == 0
    assert not (tmp_path / "no-stack").exists()
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert set(report["results"]) == {"core", "core-interpreted"} and "prefill" not in report
    table = markdown.read_text()
    assert "| core-settle | 300 |" in table and "| core-interpreted-settle | 300 |" in table
    assert "| (core: compiled / interpreted core) |" in table


def test_the_naive_baseline_round_trips_a_customer_through_its_own_json():
    from benchmarks.agents import decode_state, encode_state
    from scoring.engine import Scorer
    from devstack.traffic import TrafficGenerator, TrafficSettings
    from scoring.timeutil import DAY
    from tests.builders import CONFIG

    scorer = Scorer(CONFIG, evaluate_alerts=False)
    for message in TrafficGenerator(TrafficSettings(customers=5, seed=3)).messages(400, 20_700 * DAY, 3 * DAY):
        scorer.process(message.value, message.at_ms)
    assert any(s.sessions and s.membership and s.features for s in scorer.customers.values())
    for cid, state in scorer.customers.items():
        assert decode_state(cid, encode_state(state)) == state


def test_quantile_interpolates_within_buckets_like_histogram_quantile():
    from benchmarks.run import quantile

    buckets = [(0.01, 0.0), (0.1, 50.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == pytest.approx(0.1)
    assert quantile(buckets, 0.25) == pytest.approx(0.055)
    assert quantile(buckets, 0.99) == pytest.approx(0.982)
