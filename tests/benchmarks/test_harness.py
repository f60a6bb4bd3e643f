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
                 "--markdown", str(markdown)]) == 0
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert set(report["results"]) == set(MODES)
    for mode, result in report["results"].items():
        expected = 500 if mode == "naive" else 1500
        assert result["events"] >= expected and result["seconds"] > 0, mode
    assert report["results"]["scorer"]["redis_bytes_per_customer"] > 0
    assert report["machine"]["commit"] and report["prefill"]["events"] == 1500
    table = markdown.read_text()
    assert "| scorer | 1,500 |" in table and "× framework ceiling" in table
