"""What a worker says of itself: `/healthz`, `/readyz` and the `/metrics` scrape."""

from __future__ import annotations

import logging

from prometheus_client import generate_latest

from streams.clock import now_ms
from streams.state.kpis import LatestKpis
from streams.state.store import RedisStore
from streams.worker.failures import Retrier
from streams.worker.metrics import Metrics
from streams.worker.progress import Progress
from streams.worker.timers import ConfigAdoption

log = logging.getLogger("engage.worker")


class WorkerHealth:
    def __init__(self, worker_id: str, store: RedisStore, metrics: Metrics, retry: Retrier, progress: Progress,
                 adoption: ConfigAdoption, latest_kpis: LatestKpis) -> None:
        self.worker_id, self.store, self.metrics, self.retry = worker_id, store, metrics, retry
        self.progress, self.adoption, self.latest_kpis = progress, adoption, latest_kpis

    def identity(self) -> dict[str, str]:
        return {"worker": self.worker_id}

    async def ready(self) -> tuple[bool, str]:
        problem = await self.store.unreachable()
        if problem:
            return False, problem
        superseded = await self.store.superseded()
        if superseded:
            return False, superseded
        if self.retry.failing and self.retry.out_of_memory:
            return False, "Redis refuses writes at its maxmemory (OOM): the batch is being retried; free memory or " \
                          "raise maxmemory"
        if self.retry.failing and self.retry.unready:
            return False, f"the last batch is being retried: {self.retry.unready}"
        if self.retry.failing:
            return False, "the last batch is being retried"
        stall = self.progress.stall
        stalled = stall.stalled_for()
        if stalled is not None:          # a stuck worker is unready, re-scoring or not
            return False, f"{stall.lag} messages waiting and none consumed for {stalled:.0f} s"
        due = await self.adoption.remaining()
        if due:
            return True, f"re-scoring after a config change: {due} customers to go"
        return True, "ok"

    async def metrics_payload(self) -> bytes:
        """KPI gauges from the shared aggregates (computed at most once per ENGAGE_KPI_INTERVAL_S), pipeline metrics.

        When Redis cannot answer, the pipeline metrics are served all the same (retries, lag, the
        out-of-memory count are what an operator needs then) and the Redis-derived gauges keep
        their last values; `engagement_redis_read_failures_total` says so.
        """
        self.metrics.lag.set(self.progress.lag())
        self.metrics.assigned.set(len(self.progress.assigned()))
        try:
            gauges = self.metrics.kpi_gauges
            gauges.latest, gauges.segments = await self.latest_kpis.with_segments()
            self.metrics.due.set(await self.store.due_count(now_ms()))
            self.metrics.outbox.set(await self.store.outbox_size())
        except Exception as exc:  # noqa: BLE001 - /metrics must not fail with Redis; /readyz reports it
            self.metrics.redis_read_failures.inc()
            log.warning("/metrics: the Redis-derived gauges keep their last values: %s", exc)
        return generate_latest(self.metrics.registry)
