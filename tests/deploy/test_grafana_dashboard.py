"""The Grafana dashboard: well formed, and every panel's query returns data from a real Prometheus."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY
from devstack import stack as local
from tests.streams.support import WorkerProcess, now_ms, pipeline_settings

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "dashboards" / "engagement.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in PANELS for t in p["targets"]]


def test_dashboard_uses_the_provisioned_datasource_and_covers_the_kpis():
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid and p["targets"] for p in PANELS)
    assert all(t["datasource"]["uid"] == uid for p in PANELS for t in p["targets"])
    text = " ".join(e for _, e in exprs())
    for metric in ("active_engagement_rate_percent", "aer_reference_percent", "customers_by_tier",
                   "active_customers", "stickiness_percent", "nps", "csat_percent", "ces", "retention_rate_percent",
                   "churn_rate_percent", "conversion_rate_percent", "click_through_rate_percent", "open_rate_percent",
                   "bounce_rate_percent", "arpu", "customer_lifetime_value", "consumer_lag",
                   "event_latency_seconds_bucket", "events_rejected_total", "events_consumed_total"):
        assert f"engagement_{metric}" in text, metric
    for metric in ("active_engagement_rate_percent", "engagement_score_mean", "customers_by_tier", "members",
                   "churn_rate_percent", "nps"):
        assert f'engagement_segment_{metric}{{segment=~"$segment"}}' in text, metric     # per segment, by the variable
    [variable] = DASHBOARD["templating"]["list"]
    assert variable["name"] == "segment" and "engagement_segment_members" in variable["definition"]
    aer = next(p for p in PANELS if p["title"] == "Active engagement rate")
    steps = [s["value"] for s in aer["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 15, 25]                    # the seed's bands
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.services
def test_every_panel_query_returns_data_from_a_real_prometheus(prometheus_stack, unique, tmp_path):
    settings = pipeline_settings(prometheus_stack, unique)
    config = tmp_path / "engage.toml"       # the generator's segments with KPIs of their own: the per-segment panels
    config.write_text('[kpis]\nsegments = ["smb", "mid_market", "enterprise"]\n')
    worker = WorkerProcess(prometheus_stack, unique, tmp_path, "w1", config=config)
    stop = threading.Event()

    def feed() -> None:  # a week of history, then a steady live trickle so rates are non-zero
        producer = KafkaProducer(bootstrap_servers=prometheus_stack.kafka_bootstrap)
        start = now_ms()
        history = TrafficGenerator(TrafficSettings(customers=80, accounts=8, seed=5, prefix=unique))
        for m in history.messages(1500, start - 7 * DAY, 7 * DAY):
            producer.send(settings.events_topic, key=m.key or None, value=m.value)
        live = TrafficGenerator(TrafficSettings(customers=80, accounts=8, seed=6, prefix=unique))
        for m in live.messages(100_000, start, 2000 * 1000):
            if stop.is_set():
                break
            producer.send(settings.events_topic, key=m.key or None, value=m.value)
            time.sleep(0.02)
        producer.flush()
        producer.close()

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        worker.wait_until(lambda: worker.get("/readyz")[0] == 200, "readiness")
        feeder.start()
        worker.wait_until(lambda: worker.metrics().get("engagement_events_consumed_total", 0) > 1500, "traffic")
        local.set_scrape_targets(prometheus_stack, [f"127.0.0.1:{worker.port}"])

        def query(expr: str) -> dict:
            url = f"{prometheus_stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)

        worker.wait_until(lambda: query("max(engagement_members)")["data"]["result"], "Prometheus to scrape KPIs")
        def scrapes() -> float:
            result = query("count_over_time(engagement_messages_consumed_total[1m])")["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        worker.wait_until(lambda: scrapes() >= 5, "a few more scrapes, so rate() windows hold several samples")
        assert query("max(engagement_no_such_metric)")["data"]["result"] == []  # the check can see "no data"
        empty = []
        for title, expr in exprs():
            body = query(expr.replace("$__rate_interval", "30s").replace("$segment", "smb|enterprise"))
            assert body["status"] == "success", (title, expr)
            if not body["data"]["result"]:
                empty.append((title, expr))
        assert empty == []
    finally:
        stop.set()
        local.set_scrape_targets(prometheus_stack, [])
        worker.stop()
