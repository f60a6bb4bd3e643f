"""The Faust application: topics, the scoring agent, timers and the web routes.

Design notes (faust-streaming 0.15.3):
* `stream.take_events()` acknowledges the whole buffer in a `finally`, even when the
  body raised. So a batch never escapes the agent: the Redis commit and then the
  publishing are each retried until they succeed, and only then does the loop go on
  (and the offsets become committable). At-least-once delivery plus event-id dedup in
  the same Redis transaction gives every event exactly one effect.
* The commit also records the batch's outputs in the outbox (streams/outbox.py); they
  are deleted once Kafka acknowledged them, and a timer republishes any left behind by a
  worker that died in between (`ENGAGE_OUTBOX_GRACE_S`).
* Agent concurrency is 1: with more, a commit could pass a batch still in flight.
* No Faust tables: all state is in Redis, written per batch.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import orjson
import redis.exceptions
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scoring.config import Config
from scoring.engine import Outcome, Result
from scoring.reasons import Reason
from streams import api, security
from streams.clock import now_ms
from streams.metrics import Metrics
from streams.outbox import Kind, Output
from streams.processor import BatchProcessor, Incoming, Processed, dead_letter
from streams.settings import Settings
from streams.store import SHARDS, Keys, RedisStore

log = logging.getLogger("engage.worker")
PAGE = (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")


def _millis(seconds: float | None) -> int | None:
    return None if not seconds or seconds <= 0 else round(seconds * 1000)


class Runtime:
    """Everything the agent, timers and views share: one per worker process."""

    def __init__(self, app: faust.App, settings: Settings, config: Config) -> None:
        self.app = app
        self.settings = settings
        self.config = config
        self.worker_id = f"{settings.app_id}-{uuid.uuid4().hex[:8]}"
        self.store = RedisStore.from_settings(settings)
        self.processor = BatchProcessor(config, self.store, round(settings.outbox_grace_s * 1000))
        self.metrics = Metrics(config.aer_reference_lines)
        self.positions: dict[tuple[str, int], int] = {}   # next offset to process, per partition
        self.failing = False
        self.out_of_memory = False        # the last failure was Redis refusing a write at maxmemory
        self._conflicts_seen = 0
        self._kpis_at: float | None = None
        self.rescoring = False
        self.stall = StallWatch(settings.stall_after_s)

    async def handle(self, events: list[Any]) -> None:
        """Process one batch to completion; never raises (but for cancellation)."""
        batch = [Incoming(e.message.value or b"", e.message.key, e.message.topic, e.message.partition,
                          e.message.offset, _millis(e.message.timestamp)) for e in events]
        processed = await self._process(batch)
        await self._retry("publish", lambda: self.publish(processed))
        self._observe(processed, batch)

    async def _process(self, batch: list[Incoming]) -> Processed:
        """The batch into Redis; a message that fails the same way every time is quarantined.

        Service errors (Redis, Kafka, the network) are retried for as long as they last.
        Any other error repeating QUARANTINE_AFTER times (a corrupt stored record, a bug)
        would block the partition for good, so the batch is then applied one message at a
        time and each message that still fails is dead-lettered as `processing_error`.
        """
        try:
            return await self._retry("redis", lambda: self.processor.process(batch, now_ms()), QUARANTINE_AFTER)
        except Deterministic:
            log.error("a batch of %d messages fails the same way every time; applying it one message at a time",
                      len(batch))
        merged = Processed(now_ms=now_ms())
        for message in batch:
            try:
                part = await self._retry("redis", lambda: self.processor.process([message], now_ms()), QUARANTINE_AFTER)
            except Deterministic as failure:
                log.error("quarantined %s[%d]@%d to the DLQ: %s", message.topic, message.partition, message.offset,
                          failure.detail)
                result = Result(Outcome.REJECTED, reason=Reason.PROCESSING_ERROR, detail=failure.detail)
                output = dead_letter(message, result, merged.now_ms)
                quarantined = [(Keys.shard_of(output.output_id), output)]
                await self._retry("redis", lambda: self.processor.record(quarantined, merged.now_ms))
                part = Processed([(message, result)], now_ms=merged.now_ms, outputs=quarantined)
            merged.outcomes += part.outcomes
            merged.alerts += part.alerts
            merged.cards += part.cards
            merged.outputs += part.outputs
        return merged

    async def _retry(self, what: str, step: Callable[[], Awaitable[Any]], give_up_after: int | None = None) -> Any:
        """Until `step` succeeds; raises Deterministic after `give_up_after` non-service errors in a row."""
        attempt = repeated = 0
        while True:
            try:
                result = await step()
                self.failing = self.out_of_memory = False
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, back off, try again
                attempt += 1
                self.out_of_memory = isinstance(exc, redis.exceptions.OutOfMemoryError)
                if self.out_of_memory:
                    self.metrics.redis_out_of_memory.inc()
                repeated = 0 if _service_error(exc) else repeated + 1
                if give_up_after is not None and repeated >= give_up_after:
                    raise Deterministic(f"{type(exc).__name__}: {exc}"[:500]) from exc
                self.failing = True
                self.metrics.retries.inc()
                log.exception("%s step failed (attempt %d); retrying the same batch", what, attempt)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(attempt, 6)))

    async def publish(self, processed: Processed) -> None:
        """The batch's outputs (DLQ, scores, alerts), awaited until Kafka has them all, then out of
        the outbox; before the batch counts as done."""
        await self.send(processed.outputs)

    async def send(self, outputs: list[tuple[int, Output]]) -> None:
        """Publish outputs, wait for every acknowledgement, then delete them from the outbox."""
        # straight to Faust's producer: Topic.send's per-message machinery (FutureMessage,
        # callbacks, channel) cost ~10 % of the worker at one score message per customer
        send = self.app.producer.send
        topics = {Kind.DEAD_LETTER: self.settings.dlq_topic, Kind.SCORE: self.settings.scores_topic,
                  Kind.ALERT: self.settings.alerts_topic}
        sends = [await send(topics[output.kind], output.key, output.value, None, None, None) for _, output in outputs]
        if sends:
            await asyncio.gather(*sends)
            await self.store.settle_outputs(outputs)
        await self.store.push_recent_alerts([o.value for _, o in outputs if o.kind is Kind.ALERT])

    async def redrive(self, limit: int = 500) -> int:
        """Publish the outputs another worker (or this one, before a restart) recorded and never
        saw acknowledged: those whose grace has passed. Returns how many."""
        grace_ms = round(self.settings.outbox_grace_s * 1000)
        total = 0
        for shard in range(SHARDS):
            while True:
                at = now_ms()
                claimed = await self.store.claim_outputs(shard, at, at + grace_ms, limit)
                if not claimed:
                    break
                await self.send([(shard, output) for output in claimed])
                total += len(claimed)
                self.metrics.outbox_redriven.inc(len(claimed))
                if len(claimed) < limit:
                    break
        if total:
            log.warning("published %d outputs left in the outbox by a worker that did not see them acknowledged",
                        total)
        return total

    def _observe(self, processed: Processed, batch: list[Incoming]) -> None:
        m = self.metrics
        m.batch_size.observe(len(batch))
        m.messages.inc(len(batch))
        m.consumed.inc(len(processed.outcomes))
        m.processed.inc(processed.count(Outcome.ACCEPTED))
        m.deduplicated.inc(processed.count(Outcome.DUPLICATE))
        for _, result in processed.rejections():
            m.rejected.labels(reason=result.reason.value).inc()  # type: ignore[union-attr]
        for alert in processed.alerts:
            m.alerts.labels(rule=alert.rule.value).inc()
        for _, result in processed.outcomes:
            if result.outcome is Outcome.ACCEPTED:
                m.latency.observe(max(0.0, (processed.now_ms - result.event.ts_ms) / 1000.0))  # type: ignore[union-attr]
        for message in batch:
            key = (message.topic, message.partition)
            self.positions[key] = max(self.positions.get(key, 0), message.offset + 1)
        self.stall.progressed()
        m.conflicts.inc(self.store.conflicts - self._conflicts_seen)
        self._conflicts_seen = self.store.conflicts

    def assigned(self) -> list[Any]:
        return [tp for tp in self.app.consumer.assignment() if tp.topic == self.settings.events_topic]

    def lag(self) -> int:
        total = 0
        for tp in self.assigned():
            highwater = self.app.consumer.highwater(tp)
            if highwater is not None:
                total += max(0, highwater - self.positions.get((tp.topic, tp.partition), 0))
        return total

    async def adopt_config(self) -> None:
        """A scoring config other than the one the stored standings were computed with: re-score all.

        Scores themselves are derived from counters at read time; the stored standings
        (leaderboards, at-risk, KPI sums) are made due now, and the sweep re-scores them in
        the background while the worker consumes. /readyz and engagement_due_customers show it.
        """
        # retried like a batch: a Redis that is down or full at start-up must not crash the worker
        fingerprint = config_fingerprint(self.config)
        if await self._retry("redis", lambda: self.store.adopt_config(fingerprint)):
            marked = await self._retry("redis", lambda: self.store.mark_all_due(now_ms()))
            self.rescoring = True
            log.warning("scoring config changed: re-scoring the standings of %d customers in the background", marked)

    async def sweep(self) -> None:
        """Re-score the customers that time alone has changed (due), and publish their alerts."""
        swept = await self.processor.sweep(now_ms())
        if swept.outputs:
            await self._retry("publish", lambda: self.publish(swept))
        for alert in swept.alerts:
            self.metrics.alerts.labels(rule=alert.rule.value).inc()

    async def metrics_payload(self) -> bytes:
        """KPI gauges from the shared aggregates (cached for ENGAGE_KPI_INTERVAL_S), pipeline metrics."""
        clock = time.monotonic()
        if self._kpis_at is None or clock - self._kpis_at >= self.settings.kpi_interval_s:
            self.metrics.kpis.snapshot = await api.kpis(self.store, self.config, now_ms())
            self._kpis_at = clock
        self.metrics.lag.set(self.lag())
        self.metrics.assigned.set(len(self.assigned()))
        self.metrics.due.set(await self.store.due_count(now_ms()))
        self.metrics.outbox.set(await self.store.outbox_size())
        return generate_latest(self.metrics.registry)

    async def ready(self) -> tuple[bool, str]:
        try:
            await self.store.ping()
        except Exception as exc:  # noqa: BLE001
            return False, f"redis unreachable: {exc}"
        if self.failing and self.out_of_memory:
            return False, "Redis refuses writes at its maxmemory (OOM): the batch is being retried; free memory or " \
                          "raise maxmemory"
        if self.failing:
            return False, "the last batch is being retried"
        if self.rescoring:
            due = await self.store.due_count(now_ms())
            if due:
                return True, f"re-scoring after a config change: {due} customers to go"
            self.rescoring = False
        stalled = self.stall.stalled_for()
        if stalled is not None:
            return False, f"{self.stall.lag} messages waiting and none consumed for {stalled:.0f} s"
        return True, "ok"


def config_fingerprint(config: Config) -> str:
    """Changes whenever any scoring setting does (the stored standings were computed with one)."""
    canonical = orjson.dumps(dataclasses.asdict(config), default=sorted, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


QUARANTINE_AFTER = 3   # the same non-service error this many times in a row: quarantine, don't block


class Deterministic(Exception):
    """A step failed the same way repeatedly, for a reason no retry will fix."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _service_error(exc: BaseException) -> bool:
    """Redis, Kafka or network trouble: it passes, so the step is retried for as long as it lasts."""
    module = type(exc).__module__
    return isinstance(exc, (OSError, TimeoutError)) or module.startswith(("redis.", "kafka.", "aiokafka.", "aiohttp."))


class StallWatch:
    """Notices a consumer that owns waiting messages but makes no progress (a stuck worker).

    `observe(lag)` runs on a timer; a batch handled, or no lag at all, counts as progress.
    """

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self.clock = clock
        self.lag = 0
        self._progress_at = clock()

    def progressed(self) -> None:
        self._progress_at = self.clock()

    def observe(self, lag: int) -> None:
        self.lag = lag
        if lag <= 0:
            self.progressed()

    def stalled_for(self) -> float | None:
        """Seconds without progress while messages wait, once that exceeds `after_s`."""
        idle = self.clock() - self._progress_at
        return idle if self.lag > 0 and idle >= self.after_s else None


def create_app(settings: Settings, config: Config) -> tuple[faust.App, Runtime]:
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
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
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        producer_acks=-1,
        autodiscover=False,
    )
    runtime = Runtime(app, settings, config)
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, partitions=settings.partitions)

    @app.agent(events, concurrency=1, name="score")
    async def score(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within_s):
            await runtime.handle(list(batch))

    @app.task
    async def adopt_config() -> None:
        await runtime.adopt_config()

    @app.timer(min(5.0, settings.stall_after_s / 4))
    async def watch_progress() -> None:
        runtime.stall.observe(runtime.lag())

    @app.timer(min(5.0, settings.outbox_grace_s))
    async def redrive() -> None:
        try:
            await runtime.redrive()
        except Exception:  # noqa: BLE001 - the entries stay; the next run tries again
            log.exception("outbox redrive failed")

    @app.timer(settings.sweep_interval_s)
    async def sweep() -> None:
        try:
            await runtime.sweep()
        except Exception:  # noqa: BLE001
            log.exception("sweep failed")

    _routes(app, runtime)
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
    worker.execute_from_commandline()


def _routes(app: faust.App, runtime: Runtime) -> None:
    store, config = runtime.store, runtime.config
    token = runtime.settings.api_token

    class Guarded(View):
        """Needs `Authorization: Bearer <api_token>` when a token is set (else a JSON 401)."""

        async def dispatch(self, request: Any) -> Any:
            header = request.headers.get("Authorization")
            if not security.bearer_ok(header, token):
                return self.json(security.UNAUTHORIZED, status=401,
                                 headers={"WWW-Authenticate": security.challenge(header)})
            return await super().dispatch(request)

    MetricsBase = Guarded if runtime.settings.metrics_auth else View

    def live_as_of(query: Any) -> int:
        now = now_ms()
        return api.live(api.parse_as_of(query, now), now, config)

    async def reply(view: View, produce: Callable[[], Awaitable[Any]]) -> Response:
        try:
            return view.json(await produce())
        except api.ApiError as err:
            return view.json({"error": err.message, "status": err.status}, status=err.status)
        except Exception:  # noqa: BLE001 - never a bare 500 page
            log.exception("request failed")
            return view.json({"error": "internal error", "status": 500}, status=500)

    @app.page("/customers/{customer_id}")
    class CustomerView(Guarded):
        async def get(self, request: Request, customer_id: str) -> Response:
            return await reply(self, lambda: api.customer(
                store, config, customer_id, api.parse_as_of(request.query, now_ms())))

    @app.page("/accounts/{account_id}")
    class AccountView(Guarded):
        async def get(self, request: Request, account_id: str) -> Response:
            return await reply(self, lambda: api.account(
                store, config, account_id, api.parse_as_of(request.query, now_ms())))

    @app.page("/leaderboard")
    class LeaderboardView(Guarded):
        async def get(self, request: Request) -> Response:
            q = request.query
            return await reply(self, lambda: api.leaderboard(
                store, config, q.get("order", "top"), api.parse_limit(q), live_as_of(q)))

    @app.page("/at-risk")
    class AtRiskView(Guarded):
        async def get(self, request: Request) -> Response:
            q = request.query
            return await reply(self, lambda: api.at_risk(
                store, config, api.parse_limit(q, 50), live_as_of(q)))

    @app.page("/kpis")
    class KpisView(Guarded):
        async def get(self, request: Request) -> Response:
            return await reply(self, lambda: api.kpis(store, config, live_as_of(request.query)))

    @app.page("/alerts/recent")
    class RecentAlertsView(Guarded):
        async def get(self, request: Request) -> Response:
            async def produce() -> dict[str, Any]:
                return {"alerts": await store.recent_alerts(api.parse_limit(request.query, 20))}

            return await reply(self, produce)

    @app.page("/")
    class PageView(View):
        async def get(self, request: Request) -> Response:
            return self.html(PAGE)

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "worker": runtime.worker_id})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            ready, why = await runtime.ready()
            return self.json({"ready": ready, "detail": why}, status=200 if ready else 503)

    @app.page("/metrics")
    class MetricsView(MetricsBase):  # type: ignore[valid-type,misc]
        async def get(self, request: Request) -> Response:
            # aiohttp refuses a charset inside content_type; the full header goes in headers
            return self.bytes(await runtime.metrics_payload(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/{path:.*}")   # last: any other route is a JSON 404, like the API's own errors
    class NotFoundView(Guarded):
        async def get(self, request: Request, path: str) -> Response:
            return self.json({"error": f"no such route: /{path[:200]}", "status": 404}, status=404)
