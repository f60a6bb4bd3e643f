"""Alert webhook sink: Slack-compatible JSON, retries with backoff, nothing lost while the receiver
is down or the sink is killed."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kafka import KafkaProducer

from streams.sink.alert_sink import parse_alert
from streams.sink.webhook import alert_id, slack_payload
from tests.streams.support import AlertSinkProcess, WorkerProcess, consume_all, free_port, pipeline_settings

ALERT = {"rule": "tier_downgrade", "customer_id": "c1", "account_id": "a1", "as_of": 1700000000000,
         "before": {"tier": "excellent", "es": 81.5}, "after": {"tier": "moderate", "es": 70.25},
         "breakdown": [{"type": "like", "count": 3, "es": 1.5}, {"type": "purchase", "count": 1, "es": 9.8},
                       {"type": "share", "count": 0, "es": 0.0}]}


def test_slack_payload_reads_well_and_keeps_the_alert():
    payload = slack_payload(ALERT)
    assert payload["text"] == ("Tier downgrade: customer `c1` (account `a1`): tier excellent, es 81.5 → "
                               "tier moderate, es 70.2")  # 70.25 -> "70.2": printf rounds half to even
    assert payload["blocks"][0]["type"] == "section" and "*Tier downgrade*" in payload["blocks"][0]["text"]["text"]
    assert payload["blocks"][1]["elements"][0]["text"] == "Top drivers: purchase 1, like 3"
    assert payload["alert"] == ALERT and payload["id"] == alert_id(ALERT)
    assert alert_id({**ALERT, "as_of": 1}) != alert_id(ALERT)


def test_the_webhook_message_carries_the_alerts_sentence():
    sentence = "ES 81.5 → 70.2 (excellent → moderate) over 7 days: likes −62 %, no activity for 9 days, NPS 4"
    explained = {**ALERT, "why": {"sentence": sentence, "drivers": []}}
    payload = slack_payload(explained)
    assert payload["text"] == f"Tier downgrade: customer `c1` (account `a1`): {sentence}"
    assert sentence in payload["blocks"][0]["text"]["text"] and payload["alert"] == explained


def test_the_webhook_message_names_the_customers_owner_plan_arr_and_renewal_when_it_has_them():
    profiled = {**ALERT, "traits": {"owner": "ana", "plan": "growth", "arr": 36000, "seats_used": 21,
                                    "renewal_date": "2027-04-01"}}
    payload = slack_payload(profiled)
    assert payload["text"].endswith("(owner ana · plan growth · ARR 36000 · renews 2027-04-01)")
    assert payload["blocks"][2]["elements"][0]["text"] == "owner ana · plan growth · ARR 36000 · renews 2027-04-01"
    assert len(slack_payload({**ALERT, "traits": {"seats_used": 3}})["blocks"]) == 2     # none of them: no line


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b'{"rule": "inactive"}', b'{"customer_id": "c", "rule": 3}',
                                 b'{"customer_id": "c", "rule": "inactive"}'])
def test_a_record_that_is_not_an_alert_is_recognised(raw):
    assert parse_alert(raw) is None


def test_an_alert_is_recognised():
    assert parse_alert(json.dumps(ALERT).encode()) == ALERT


class Receiver:
    """An HTTP receiver that answers 503 to its first `failures` requests, then 200 (after `delay_s`)."""

    def __init__(self, port: int, failures: int, delay_s: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 503 if len(receiver.statuses) < failures else 200
                time.sleep(delay_s if status == 200 else 0)
                receiver.statuses.append(status)
                if status == 200:
                    receiver.bodies.append(body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def publish(stack, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for i, value in enumerate(values):
        producer.send(topic, key=f"k{i}".encode(), value=value)
    producer.flush()
    producer.close()


@pytest.mark.services
def test_alerts_reach_a_receiver_that_is_down_then_failing_across_a_killed_sink(stack, unique, tmp_path):
    from tests.streams.test_pipeline import produce_stream

    alerts_topic = f"{unique}.engagement.alerts"
    values = produce_stream(stack, unique)  # a backlog: the worker and the sink both start into it
    # the stream alone may raise no alert (a dip inside one batch does not alert): a 2 s
    # inactivity rule and a 1 s sweep make sure the worker publishes alerts of its own
    config = tmp_path / "alerts.toml"
    config.write_text('[alerts]\ninactivity = "2s"\n')
    worker = WorkerProcess(stack, unique, tmp_path, "w1", config=config, sweep_s="1")
    port = free_port()                      # nothing listens here yet: connections are refused
    url = f"http://127.0.0.1:{port}/hook"
    backoff = {"ENGAGE_ALERT_WEBHOOK_MAX_BACKOFF_S": "1"}
    sink = AlertSinkProcess(stack, unique, tmp_path, "sink1", url, backoff)
    receiver = None
    try:
        # the worker's own alerts, plus enough more that the sink can be killed mid-way
        extra = [json.dumps({**ALERT, "customer_id": f"{unique}-x{i}"}).encode() for i in range(40)]
        publish(stack, alerts_topic, extra)
        sink.wait_until(lambda: sink.metrics().get("engagement_alert_webhook_failures_total", 0) >= 2,
                        "refused connections while the receiver is down")
        worker.wait_until(lambda: worker.metrics()["engagement_events_consumed_total"] == len(values),
                          "the worker to consume the backlog")
        worker.wait_until(lambda: len(consume_all(stack, alerts_topic)) > len(extra), "the worker's own alerts")
        worker.wait_for_sweeps(2)           # a few more sweeps: each member's inactivity alert fires once
        expected = {alert_id(json.loads(v)) for _, v in consume_all(stack, alerts_topic)}
        assert len(expected) > len(extra)   # the worker published alerts of its own

        receiver = Receiver(port, failures=3, delay_s=0.05)
        sink.wait_until(lambda: len(receiver.bodies) >= 10, "the first deliveries")
        sink.kill()                         # SIGKILL mid-delivery: the alert in flight may repeat
        time.sleep(0.5)                     # a request the receiver was answering still lands
        delivered_before_kill = len(receiver.bodies)
        assert delivered_before_kill < len(expected)
        publish(stack, alerts_topic, [b"not an alert"])  # a poison record must not block the partition
        sink = AlertSinkProcess(stack, unique, tmp_path, "sink2", url, backoff)
        sink.wait_until(lambda: {b["id"] for b in receiver.bodies} >= expected, "every alert to be delivered",
                        timeout=240)
        expected = {alert_id(a) for _, v in consume_all(stack, alerts_topic) if (a := parse_alert(v))}  # later ones too
        sink.wait_until(lambda: {b["id"] for b in receiver.bodies} >= expected, "every alert to be delivered")
        assert receiver.statuses[:3] == [503, 503, 503]   # it really failed before it accepted
        ids = [b["id"] for b in receiver.bodies]
        assert set(ids) == expected
        assert len(ids) - len(expected) <= 1              # at-least-once: at most the one in flight repeats
        assert all(b["text"] and b["alert"]["rule"] for b in receiver.bodies)
        sink.wait_until(lambda: sink.metrics()["engagement_alert_sink_lag"] == 0, "the sink's lag to reach 0")
        assert sink.metrics()["engagement_alert_webhook_skipped_total"] == 1
        assert sink.metrics()["engagement_alert_webhook_delivered_total"] == len(ids) - delivered_before_kill
    finally:
        if receiver:
            receiver.close()
        sink.stop()
        worker.stop()


@pytest.mark.services
def test_the_sink_routes_by_segment_and_sends_nothing_for_a_condition_acknowledged_through_the_api(
        stack, unique, tmp_path):
    """Real worker, API and sink: two members fall silent (a 2 s inactivity rule); the enterprise one's
    alert is acknowledged through the worker's API before the sink starts; the sink sends the smb one
    by its route to the smb webhook, and nothing for the acknowledged condition, nothing to the default."""
    import urllib.request

    config = tmp_path / "routes.toml"
    config.write_text('[alerts]\ninactivity = "2s"\n[kpis]\nsegments = ["smb", "enterprise"]\n'
                      '[alerts.routes.smb]\nwebhook = "smb"\nsegments = ["smb"]\n')
    settings = pipeline_settings(stack, unique)
    write_token = "writer-token-0123456789"
    worker = WorkerProcess(stack, unique, tmp_path, "w1", config=config, sweep_s="1",
                           extra_env={"ENGAGE_API_WRITE_TOKEN": write_token})
    default_port, smb_port = free_port(), free_port()
    default, smb = Receiver(default_port, failures=0), Receiver(smb_port, failures=0)
    sink = None
    try:
        now = int(time.time() * 1000)
        events = [{"event_id": f"{unique}-{c}-{kind}", "customer_id": f"{unique}-{c}", "type": kind, "ts": now - 60_000,
                   "segment": segment} for c, segment in (("s", "smb"), ("e", "enterprise"))
                  for kind in ("member_joined", "like")]
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        for event in events:
            producer.send(settings.events_topic, key=event["customer_id"].encode(), value=json.dumps(event).encode())
        producer.flush()
        producer.close()
        listed = lambda: worker.get("/alerts")[1]["alerts"] if worker.get("/readyz")[0] == 200 else []  # noqa: E731
        alerts = worker.wait_until(lambda: (a := listed()) and len(a) == 2 and a, "both members' inactive alerts")
        [enterprise] = [a for a in alerts if a["segment"] == "enterprise"]
        request = urllib.request.Request(f"{worker.url}/alerts/{enterprise['id']}/acknowledge", method="POST",
                                         data=json.dumps({"by": "ana"}).encode(),
                                         headers={"Authorization": f"Bearer {write_token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["state"] == "acknowledged"

        sink = AlertSinkProcess(stack, unique, tmp_path, "sink", f"http://127.0.0.1:{default_port}/hook", config=config,
                                extra_env={"ENGAGE_ALERT_WEBHOOKS": f"smb=http://127.0.0.1:{smb_port}/hook"})
        sink.wait_until(lambda: sink.metrics().get('engagement_alert_webhook_not_sent_total{reason="acknowledged"}')
                        == 1 and len(smb.bodies) == 1, "the smb alert sent by its route, the other held back")
        sink.wait_until(lambda: sink.metrics()["engagement_alert_sink_lag"] == 0, "the sink's lag to reach 0")
        assert [b["alert"]["customer_id"] for b in smb.bodies] == [f"{unique}-s"]
        assert default.bodies == []
    finally:
        default.close()
        smb.close()
        if sink:
            sink.stop()
        worker.stop()
