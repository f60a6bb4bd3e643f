"""Helpers for tests that run real worker processes against the session's stack."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from scoring.state import CustomerState
from devstack import stack as local
from streams.clock import now_ms  # noqa: F401  (re-exported for the tests)
from devstack.processes import free_port
from streams.settings import Settings, load_settings, prefixed_topics
from streams.worker.topics import ensure_topics


class WorkerProcess:
    """`engage worker` as a real subprocess."""

    def __init__(self, stack: local.Stack, unique: str, log_dir: Path, name: str, config: Path | None = None,
                 sweep_s: str = "3600", extra_env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self._start(stack, log_dir, name, extra_env, [
            *(["--config", str(config)] if config else []), "worker", "--topic-prefix", f"{unique}.",
            "--app-id", unique, "--key-prefix", unique, "--web-port", str(self.port)],
            {"ENGAGE_KPI_INTERVAL_S": "1", "ENGAGE_SWEEP_INTERVAL_S": sweep_s,
             "ENGAGE_DATA_DIR": str(log_dir / f"{name}-data")})

    def _start(self, stack: local.Stack, log_dir: Path, name: str, extra_env: dict[str, str] | None,
               args: list[str], env: dict[str, str]) -> None:
        self.log = log_dir / f"{name}.log"
        env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "ENGAGE_REDIS_URL": stack.redis_url,
               **env, **(extra_env or {})}
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                                        stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def post(self, path: str, body: object) -> tuple[int, object]:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def wait_until(self, predicate, what: str, timeout: float = 180.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                value = predicate()
                if value:
                    return value
            except (OSError, ValueError, KeyError) as exc:
                last_error = exc
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what} ({last_error}); log:\n{self.log.read_text()[-3000:]}")

    def wait_for_sweeps(self, count: int) -> None:
        """Until the worker has completed `count` more due sweeps: a window in which a condition
        that should not change (an alert that must not fire again) has had its chances."""
        def sweeps() -> float:
            return self.metrics()["engagement_sweeps_total"]

        (start,) = self.wait_until(lambda: (sweeps(),), "the sweep counter")   # a tuple: true even at 0
        self.wait_until(lambda: sweeps() >= start + count, f"{count} more sweeps")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ApiProcess(WorkerProcess):
    """`engage api` as a real subprocess, serving the key prefix of the workers of `unique`."""

    def __init__(self, stack: local.Stack, unique: str, log_dir: Path, name: str = "api",
                 extra_env: dict[str, str] | None = None, port: int | None = None, config: Path | None = None) -> None:
        self.port = port or free_port()
        self._start(stack, log_dir, name, extra_env, [*(["--config", str(config)] if config else []),
                                                      "api", "--key-prefix", unique, "--web-port", str(self.port)], {})


class AlertSinkProcess(WorkerProcess):
    """`engage alert-sink` as a real subprocess (same HTTP helpers: /metrics, /healthz)."""

    def __init__(self, stack: local.Stack, unique: str, log_dir: Path, name: str, url: str,
                 extra_env: dict[str, str] | None = None, config: Path | None = None) -> None:
        self.port = free_port()
        self._start(stack, log_dir, name, extra_env, [
            *(["--config", str(config)] if config else []), "alert-sink", "--topic-prefix", f"{unique}.",
            "--app-id", unique, "--key-prefix", unique, "--url", url, "--port", str(self.port)], {})

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def pipeline_settings(stack: local.Stack, unique: str) -> Settings:
    """Settings of this test's isolated topics (created here), as `--topic-prefix {unique}.` gives the worker."""
    settings = load_settings({"kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url,
                              **prefixed_topics(f"{unique}.")})
    ensure_topics(settings)
    return settings


def redis_records(stack: local.Stack, prefix: str, cluster_url: str | None = None, url: str | None = None) -> dict:
    """Every customer's core state under a key prefix, read from the real Redis through the store.

    `cluster_url`: read from that Redis Cluster instead; `url`: from that single Redis. Event ids are left out (the store reads them per event, not per customer): compare with
    `without_ids(state)` of the core's.
    """
    import asyncio

    from streams.state.store import RedisStore

    async def read() -> dict:
        store = RedisStore.from_url(cluster_url or url or stack.redis_url, prefix, cluster=cluster_url is not None)
        try:
            return {c: s.state for c, s in (await store.load(await store.customer_ids())).stored.items()}
        finally:
            await store.close()

    return asyncio.run(read())


def without_ids(state: CustomerState) -> CustomerState:
    return dataclasses.replace(state, seen={})


def consume_all(stack: local.Stack, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record of `topic` up to its end offsets as of now (bounded even while it grows)."""
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records += [(r.key, r.value) for r in batch if r.offset < end[tp]]
        return records
    finally:
        consumer.close()


