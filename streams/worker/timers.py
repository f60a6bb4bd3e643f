"""The worker's time-driven work: the due sweep with its KPI trend point, and config adoption."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import orjson

from scoring.business import trend_point
from scoring.config import Config, config_mapping
from streams.clock import now_ms
from streams.state.kpis import LatestKpis
from streams.state.store import RedisStore
from streams.worker.failures import Retrier
from streams.worker.lifecycle import BatchLifecycle
from streams.worker.metrics import Metrics

log = logging.getLogger("engage.worker")


class Sweeper:
    """Re-scores the customers that time alone has changed (due), publishes their alerts, and
    records this bucket's KPI trend point."""

    def __init__(self, config: Config, store: RedisStore, lifecycle: BatchLifecycle, latest_kpis: LatestKpis,
                 metrics: Metrics, retry: Retrier) -> None:
        self.config, self.store, self.lifecycle = config, store, lifecycle
        self.latest_kpis, self.metrics, self.retry = latest_kpis, metrics, retry

    async def sweep(self) -> None:
        """The trend point is recorded here and not with every KPI answer: a write on the /metrics
        path would hang every scrape while Redis refuses writes. Nothing before the worker adopted
        its config; nothing once another worker's config superseded it (the sweep also deletes
        totals and activity entries by its config's windows, outside the write script's check)."""
        if not self.lifecycle.adopted.is_set():
            return
        if await self.store.superseded():      # /readyz says why (WorkerHealth)
            return
        swept = await self.lifecycle.writer.sweep(now_ms())
        if swept.outputs:
            await self.retry("publish", lambda: self.lifecycle.publisher.send(swept.outputs))
        for alert in (*swept.alerts, *swept.account_alerts):
            self.metrics.alerts.labels(rule=alert.rule.value).inc()
        for alert in swept.stale_alerts:
            self.metrics.stale_alerts.labels(rule=alert.rule.value).inc()
        self.metrics.sweeps.inc()
        self.lifecycle.observe_cache()
        whole, segments = await self.latest_kpis.with_segments()
        await self.record_trend(whole)
        for segment, kpis in segments.items():
            await self.record_trend(kpis, segment)

    async def record_trend(self, kpis: dict[str, Any], segment: str | None = None) -> None:
        """Keep the headline KPIs of this bucket (GET /kpis/trend), dropping points past the KPI window."""
        bucket, point = trend_point(kpis, self.config)
        oldest = bucket - self.config.kpis.window_ms // self.config.scoring.bucket_ms
        await self.store.record_kpi_trend(bucket, point, oldest, segment)


class ConfigAdoption:
    """A scoring config other than the one the stored standings were computed with: re-score all.

    Scores themselves are derived from counters at read time; the stored standings
    (leaderboards, at-risk, KPI sums) are made due now, and the sweep re-scores them in
    the background while the worker consumes. /readyz and engagement_due_customers show it.
    """

    def __init__(self, config: Config, store: RedisStore, retry: Retrier) -> None:
        self.config, self.store, self.retry = config, store, retry
        self.rescoring = False
        self.adopted = asyncio.Event()     # no batch or sweep is written before (BatchLifecycle, Sweeper)

    async def adopt(self) -> None:
        """Make this worker's config the prefix's: the last worker started wins. From then on a
        worker started later with another config supersedes this one, whose writes Redis refuses
        (a rolling change: docs/operations.md)."""
        # retried like a batch: a Redis that is down or full at start-up must not crash the worker
        fingerprint = config_fingerprint(self.config)
        changed = await self.retry("redis", lambda: self.store.adopt_config(fingerprint))
        self.adopted.set()
        if changed:
            marked = await self.retry("redis", lambda: self.store.mark_all_due(now_ms()))
            self.rescoring = True
            log.warning("scoring config changed: re-scoring the standings of %d customers in the background", marked)

    async def remaining(self) -> int:
        """Customers still to re-score after a config change (0 once done, and ever after)."""
        if not self.rescoring:
            return 0
        due = await self.store.due_count(now_ms())
        if not due:
            self.rescoring = False
        return due


def config_fingerprint(config: Config) -> str:
    """Changes whenever any scoring setting does (the stored standings were computed with one)."""
    # the config as its TOML tables (config_mapping): independent of how the classes are laid out
    mapping = config_mapping(config)
    del mapping["alerts"]["routes"]      # where alerts go changes no score: the sink's alone
    del mapping["accounts"]              # how users weigh in an account: read when an account is, no standing holds it
    canonical = orjson.dumps(mapping, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]
