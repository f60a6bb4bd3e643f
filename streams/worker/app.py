"""The Faust wiring of a worker: the app, the scoring agent and the periodic jobs.

Everything it runs lives elsewhere: the worker's parts in `streams.worker.runtime` (the batch
lifecycle, progress, timers, health); its HTTP routes are mounted by `streams.processes`.
Notes (faust-streaming 0.15.3):

* Agent concurrency is 1: with more, a commit could pass a batch still in flight.
* No Faust tables: all state is in Redis, written per batch.
* Consumption (`ENGAGE_CONSUMPTION`): `chunked` (the default) hands the agent one event per
  fetched run of a partition's records (the chunks fetched together are one batch), and the
  producer is idempotent
  (`streams.worker.kafka_transport`); `stock` is Faust unmodified: its per-message path, events
  gathered with `noack_take`. Both ack a batch's events themselves, once `BatchLifecycle` has its
  write confirmed and its outputs published (`pipelined`: while the next batch is read and scored).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust

from scoring.config import Config
from streams import security
from streams.gc_tuning import quiet_collector
from streams.settings import Settings
from streams.state.store import RedisStore
from streams.worker import kafka_transport
from streams.worker.batch import Incoming
from streams.worker.metrics import Metrics
from streams.worker.runtime import Runtime

log = logging.getLogger("engage.worker")
CHUNKS_BUFFERED = 4   # chunks fetched ahead of the agent per partition's stream buffer (each up to a batch)


def incoming(event: Any) -> Incoming:
    """A Faust event of the stock path as the batch writer takes it (Faust's timestamp is in seconds)."""
    seconds = event.message.timestamp
    return Incoming.of_record(event.message, timestamp_ms=seconds * 1000 if seconds else 0)


def chunk_incoming(event: Any) -> list[Incoming]:
    """A chunk event's aiokafka records as the batch writer takes them."""
    return [Incoming.of_record(record) for record in event.value]


def acknowledger(stream: faust.StreamT, events: list[Any]) -> Callable[[], Awaitable[None]]:
    """Acknowledges a batch's Faust events (their offsets become committable), once it is done."""
    async def acknowledge() -> None:
        for event in events:
            await stream.ack(event)
    return acknowledge


def consumption_settings(settings: Settings) -> dict[str, Any]:
    """The Faust app settings of the chosen consumption path (refuses an unvalidated Faust for chunked).

    The `engage://` transport serves both the consumer (chunks) and the producer (idempotent)."""
    if settings.consumption == "stock":
        return {}
    kafka_transport.check_faust_version()
    kafka_transport.register()
    return {
        "broker_consumer": f"{kafka_transport.SCHEME}://{settings.kafka_bootstrap}",
        "broker_producer": f"{kafka_transport.SCHEME}://{settings.kafka_bootstrap}",   # idempotent
        "broker_max_poll_records": settings.batch_size,   # a chunk is at most one batch
        "stream_buffer_maxsize": CHUNKS_BUFFERED,
    }


def create_app(settings: Settings, config: Config) -> tuple[faust.App, Runtime]:
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        **consumption_settings(settings),
        broker_credentials=security.faust_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        datadir=settings.data_dir,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,   # the worker sets the cluster's (streams.worker.topics.replication) before it runs
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        consumer_group_instance_id=settings.group_instance_id or None,
        producer_acks=-1,
        autodiscover=False,
    )
    runtime = Runtime(settings, config, RedisStore.from_settings(settings), Metrics(config.aer.reference_lines),
                      producer=lambda: app.producer, consumer=lambda: app.consumer,
                      stopping=lambda: bool(app.should_stop))
    if settings.consumption == "stock":
        events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)

        @app.agent(events, concurrency=1, name="score")
        async def score(stream: faust.StreamT) -> None:
            try:
                async for batch in stream.noack_take(settings.batch_size, within=settings.batch_within_s):
                    await runtime.lifecycle.pipelined([incoming(event) for event in batch], acknowledger(stream, batch))
            finally:
                runtime.lifecycle.cancel()
    else:
        chunks = app.topic(settings.events_topic, schema=kafka_transport.ChunkSchema(),
                           partitions=settings.partitions)

        @app.agent(chunks, concurrency=1, name="score")
        async def score_chunks(stream: faust.StreamT) -> None:
            # the chunks fetched together (one per partition) make one batch: a batch has a fixed cost
            # (Redis round trips, the publish), so live traffic in small chunks is not paid per chunk
            try:
                async for events in stream.noack_take(CHUNKS_BUFFERED, within=settings.batch_within_s):
                    await runtime.lifecycle.pipelined([message for event in events for message in chunk_incoming(event)],
                                                      acknowledger(stream, events))
            finally:
                runtime.lifecycle.cancel()

    @app.on_partitions_assigned.connect
    async def count_assignment(sender: Any, assigned: Any, **kwargs: Any) -> None:
        runtime.metrics.assignments.inc()   # a rise with no worker joining or leaving is a false rebalance

    @app.on_partitions_revoked.connect
    async def forget_positions(sender: Any, revoked: Any, **kwargs: Any) -> None:
        runtime.progress.forget(revoked)

    @app.task
    async def adopt_config() -> None:
        await runtime.adoption.adopt()

    @app.timer(min(5.0, settings.stall_after_s / 4))
    async def watch_progress() -> None:
        runtime.progress.watch()

    @app.timer(min(5.0, settings.outbox_grace_s))
    async def redrive() -> None:
        try:
            await runtime.publisher.redrive()
        except Exception:  # noqa: BLE001 - the entries stay; the next run tries again
            log.exception("outbox redrive failed")

    @app.task
    async def keep_kpis_fresh() -> None:
        # /kpis, /metrics and the sweep's trend point then find the answer computed (one per half interval)
        await runtime.latest_kpis.keep_fresh()

    @app.timer(settings.sweep_interval_s)
    async def sweep() -> None:
        try:
            await runtime.sweeper.sweep()
        except Exception:  # noqa: BLE001
            log.exception("sweep failed")

    return app, runtime


def run_worker(app: faust.App, loglevel: str) -> None:
    """Run the app in a Faust worker, without its terminal spinner.

    At a log level of WARNING or above, Faust's worker keeps a progress spinner that sets
    the root logger to DEBUG so that every record spins it: every aiokafka debug call then
    builds a LogRecord (about 7 % of a busy worker's CPU, measured with py-spy).
    """
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    quiet_collector()
    worker.execute_from_commandline()
