"""One worker process's parts, built once and handed to the Faust wiring (`streams.worker.app`).

Each part has one reason to change: the batch lifecycle (`lifecycle`), where the partitions
stand (`progress`), the due sweep and config adoption (`timers`), and what the worker says of
itself (`health`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from scoring.config import Config
from streams.settings import Settings
from streams.state.kpis import LatestKpis
from streams.state.store import RedisStore
from streams.worker.failures import Retrier
from streams.worker.health import WorkerHealth
from streams.worker.lifecycle import BatchLifecycle
from streams.worker.metrics import Metrics
from streams.worker.progress import Progress
from streams.worker.publishing import Publisher
from streams.worker.timers import ConfigAdoption, Sweeper
from streams.worker.writer import BatchWriter


class Runtime:
    def __init__(self, settings: Settings, config: Config, store: RedisStore, metrics: Metrics,
                 producer: Callable[[], Any], consumer: Callable[[], Any],
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.settings, self.config, self.store, self.metrics = settings, config, store, metrics
        self.retry = Retrier(metrics, stopping=stopping)
        self.progress = Progress(settings.events_topic, consumer, settings.stall_after_s)
        writer = BatchWriter(config, store, round(settings.outbox_grace_s * 1000),
                             remember=settings.state_cache_customers)
        self.publisher = Publisher(settings, store, metrics, producer, self.retry)
        self.adoption = ConfigAdoption(config, store, self.retry)
        self.lifecycle = BatchLifecycle(store, writer, self.publisher, self.retry, metrics, self.progress,
                                        self.adoption.adopted)
        self.latest_kpis = LatestKpis(store, config, settings.kpi_interval_s)
        self.sweeper = Sweeper(config, store, self.lifecycle, self.latest_kpis, metrics, self.retry)
        self.health = WorkerHealth(f"{settings.app_id}-{uuid.uuid4().hex[:8]}", store, metrics, self.retry,
                                   self.progress, self.adoption, self.latest_kpis)
