"""`engage import` (docs/import.md) against the real broker and Redis: a live stream, then its
history imported with the installed console script; the worker equals the core over everything
on the topic, bad lines are reported and not sent, and the same import again changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import orjson
import pytest
from kafka import KafkaProducer

from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.events import validate_event
from scoring.reasons import EventRejected
from scoring.timeutil import DAY, HOUR
from streams.clock import now_ms
from tests.streams.support import WorkerProcess, consume_all, pipeline_settings
from tests.builders import CONFIG
from tests.streams.test_pipeline import check_everything

pytestmark = pytest.mark.services


def _key(value: bytes) -> bytes | None:
    """A message's key, as producers key them: its customer (none for a malformed one)."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    customer = event.get("customer_id") if isinstance(event, dict) else None
    return str(customer).encode() if customer is not None else None


def engage_import(stack, unique: str, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    exe = shutil.which("engage", path=os.path.dirname(sys.executable))
    assert exe, "the engage console script is not installed next to the interpreter"
    return subprocess.run([exe, "import", *args, "--kafka", stack.kafka_bootstrap, "--topic-prefix", f"{unique}."],
                          capture_output=True, text=True, timeout=120)


def test_history_imported_after_the_live_stream_equals_the_core_and_again_changes_nothing(stack, unique, tmp_path):
    settings = pipeline_settings(stack, unique)
    now = now_ms()
    traffic = TrafficGenerator(TrafficSettings(customers=120, accounts=12, seed=11, prefix=unique, malformed_share=0.01,
                                               late_share=0.01, duplicate_share=0.02))
    messages = [m.value for m in traffic.messages(4000, now - 20 * DAY, 20 * DAY - HOUR)]
    cut = now - 2 * DAY

    def older_event(value: bytes) -> dict | None:
        """The event a message holds if it is history to import: valid, older than the cut, no membership."""
        try:
            event = validate_event(orjson.loads(value), CONFIG)
        except (orjson.JSONDecodeError, EventRejected):
            return None
        return orjson.loads(value) if event.ts_ms < cut and event.type not in ("member_joined", "member_left") else None

    live = [value for value in messages if older_event(value) is None]      # and every kind of trouble
    older = [e for e in map(older_event, messages) if e is not None]
    unique_older = len({(e["customer_id"], e["event_id"]) for e in older})   # a file's repeated ids are not sent
    worker = WorkerProcess(stack, unique, tmp_path, "w1")
    try:
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        for value in live:
            producer.send(settings.events_topic, key=_key(value), value=value)
        producer.flush()
        producer.close()
        worker.wait_until(lambda: worker.metrics().get("engagement_events_consumed_total") == len(live), "the live stream")

        # the warehouse's history: events (one line malformed, one a membership change), then daily counts
        history = tmp_path / "history.jsonl"
        joined = {"event_id": f"{unique}-j", "customer_id": f"{unique}c1", "type": "member_joined", "ts": cut - DAY}
        lines = [orjson.dumps(e).decode() for e in older[:10]] + ["{not json"] + [orjson.dumps(joined).decode()] + \
            [orjson.dumps(e).decode() for e in older[10:]]
        history.write_text("\n".join(lines) + "\n" + lines[0] + "\n")          # and a repeat of the first line
        done = engage_import(stack, unique, str(history), "--id", "wh-1")
        assert done.returncode == 1, done.stderr
        assert "line 11: malformed_json" in done.stderr and "line 12: not_importable (type)" in done.stderr
        repeats = len(older) - unique_older + 1
        assert f"{unique_older:,} events sent" in done.stderr and f"{repeats + 2} lines not sent" in done.stderr
        daily = tmp_path / "daily.csv"
        day = datetime.fromtimestamp((cut - 5 * DAY) / 1000, timezone.utc).strftime("%Y-%m-%d")
        daily.write_text(f"customer_id,date,type,count\n{unique}c1,{day},purchase,2\n{unique}c2,{day},like,30\n")
        assert engage_import(stack, unique, str(daily), "--id", "daily-1", "--format", "daily").returncode == 1
        daily.write_text(f"customer_id,date,type,count,value\n{unique}c1,{day},purchase,2,80\n"
                         f"{unique}c2,{day},like,30,\n")
        assert engage_import(stack, unique, str(daily), "--id", "daily-1", "--format", "daily").returncode == 0

        values = [value for _, value in consume_all(stack, settings.events_topic)]
        assert len(values) == len(live) + unique_older + 3       # the daily like went twice: once a duplicate
        reference = check_everything(stack, unique, values, [worker])
        assert reference.customers[f"{unique}c1"].imports["daily-1"][0] == 2
        processed = worker.metrics()["engagement_events_processed_total"]

        # the same file again under the same id: every row a duplicate, nothing changes
        again = engage_import(stack, unique, str(history), "--id", "wh-1")
        assert again.returncode == 1 and f"{unique_older:,} events sent" in again.stderr
        values = [value for _, value in consume_all(stack, settings.events_topic)]
        check_everything(stack, unique, values, [worker])
        assert worker.metrics()["engagement_events_processed_total"] == processed
        assert worker.metrics()["engagement_events_deduplicated_total"] >= unique_older
    finally:
        worker.stop()
