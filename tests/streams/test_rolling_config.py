"""A scoring config change rolled out while old and new workers run side by side (as a Kubernetes
rolling update does): two workers on config A, one restarted on config B, then the other.

The rule under test: the last worker started adopts its config for the whole prefix, and Redis
refuses the writes of a worker computed with any other (the apply script checks each shard's
config key), so the stored standings never flap between the two configs. The superseded worker
writes nothing, says why on /readyz, and stops cleanly when it is replaced; its uncommitted
events are consumed again by the new workers. The end state equals the core's under config B.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.parse
from collections import Counter

import orjson
import pytest

from scoring.config import load_config
from scoring.engine import Scorer
from tests.streams.support import WorkerProcess, consume_all, now_ms, pipeline_settings
from tests.streams.test_faults import PacedProducer, consumed, generated, owns_all_partitions

pytestmark = pytest.mark.services

CONFIG_B = ("[weights]\nlike = 10\nfollow = 1\npurchase = 7\n"
            "[tiers]\nexcellent = 50\nmoderate = 20\n")


def processed(worker: WorkerProcess) -> float:
    return worker.metrics()["engagement_events_processed_total"]


def assigned(worker: WorkerProcess) -> float:
    return worker.metrics().get("engagement_assigned_partitions", 0)


def stop_cleanly(worker: WorkerProcess, within_s: float = 30) -> None:
    """SIGTERM, and the worker must exit by itself (a pod is SIGKILLed after its grace period)."""
    worker.process.send_signal(signal.SIGTERM)
    try:
        worker.process.wait(timeout=within_s)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        raise AssertionError(f"{worker.log} did not exit within {within_s} s of SIGTERM") from None


def test_a_rolling_config_change_never_mixes_configs_and_ends_like_the_core_under_the_new_one(
        stack, unique, start, tmp_path):
    settings = pipeline_settings(stack, unique)
    messages = generated(unique, seed=31)
    config_b = tmp_path / "config-b.toml"
    config_b.write_text(CONFIG_B)

    old_1 = start(stack, unique, "a1")
    old_1.wait_until(lambda: owns_all_partitions(old_1), "partitions")
    sending = PacedProducer(stack, settings.events_topic, [(m.key, m.value) for m in messages], 30)
    sending.start()
    old_2 = start(stack, unique, "a2")
    old_2.wait_until(lambda: assigned(old_2) > 0 and processed(old_2) > 0, "the second old worker to score")

    # one old worker replaced by a new one: it adopts config B, and the old one left is superseded
    stop_cleanly(old_1)
    new_1 = start(stack, unique, "b1", config=config_b)
    new_1.wait_until(lambda: "config changed" in new_1.log.read_text(), "the new worker to adopt config B")
    old_2.wait_until(lambda: old_2.get("/readyz")[0] == 503, "the old worker to turn unready")
    assert "another worker adopted scoring config" in str(old_2.get("/readyz")[1])
    frozen = processed(old_2)
    for _ in range(12):                     # while both run, the old one writes nothing
        time.sleep(0.25)
        assert processed(old_2) == frozen, "a worker on the superseded config wrote a batch"
    assert sending.is_alive(), "the stream ended before both configs ran side by side"

    # then the other: it stops by itself on SIGTERM although its batch cannot be written
    stop_cleanly(old_2)
    new_2 = start(stack, unique, "b2", config=config_b)
    sending.finish(timeout=120)

    config = load_config(config_b)
    total = len(messages)
    settled = lambda: (consumed(new_1) + consumed(new_2) > 0 and  # noqa: E731
                       new_1.metrics().get("engagement_consumer_lag", 1) == 0 and
                       new_2.metrics().get("engagement_consumer_lag", 1) == 0 and
                       new_2.metrics().get("engagement_due_customers", 1) == 0)
    new_2.wait_until(settled, "both new workers caught up and every standing re-scored", timeout=240)

    reference = Scorer(config)
    for message in messages:
        reference.process_message(message.value, now_ms())
    assert len(reference.customers) > 50 and total > 0

    differing: dict[str, object] = {}

    def kpis_agree() -> bool:
        at = now_ms()
        status, body = new_2.get(f"/kpis?as_of={at}")
        expected = json.loads(orjson.dumps(reference.kpis(at).to_dict()))
        differing.clear()
        differing.update({k: (body.get(k), v) for k, v in expected.items() if status == 200 and body.get(k) != v})
        return status == 200 and body == expected

    try:
        new_2.wait_until(kpis_agree, "/kpis to equal the core's under config B", timeout=60)
    except AssertionError:
        raise AssertionError(f"/kpis (live, core) differ in {differing}") from None
    as_of = now_ms()
    for order in ("top", "bottom"):
        status, body = new_2.get(f"/leaderboard?order={order}&limit=20")
        expected = reference.leaderboard(as_of, limit=20, bottom=order == "bottom")
        assert status == 200 and [(c["customer_id"], c["es"], c["tier"]) for c in body["customers"]] == [
            (c.customer_id, round(c.es, 6), c.tier.value) for c in expected]
    for cid in sorted(reference.customers)[:40]:
        status, body = new_1.get(f"/customers/{urllib.parse.quote(cid)}?as_of={as_of}")
        mine = json.loads(orjson.dumps(reference.customer(cid, as_of).to_dict()))
        assert status == 200 and {k: body[k] for k in ("es", "cer", "tier")} == {k: mine[k] for k in ("es", "cer", "tier")}

    # every alert published once, whichever worker and config made it
    ids = Counter(json.loads(value)["id"] for _, value in consume_all(stack, settings.alerts_topic))
    assert ids and max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:5]
