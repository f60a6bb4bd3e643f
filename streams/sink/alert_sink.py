"""`engage alert-sink`: alerts (customer and account) from Kafka to a webhook, in a process of its own.

Why its own process: a Faust worker that ran this sink as a second agent next to the
scoring agent was seen to sit idle after start-up when a backlog waited (about 1 run in
7). A plain aiokafka consumer group has none of Faust's multi-agent start-up, keeps the
scoring worker's event loop free of HTTP waits, and scales and restarts independently.

Delivery: one alert at a time, POSTed until the receiver answers 2xx (capped exponential
backoff), then its offset is committed. While the receiver is down alerts wait in Kafka;
after a crash the alert in flight may be sent again (at-least-once; `id` lets receivers
drop repeats). A record that is not an alert (not JSON, no rule) cannot be delivered and
would block the partition forever: it is logged, counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from streams import security
from scoring.alert_routes import AlertRoute, next_digest, route_for, within_limit
from scoring.alert_work import sends
from scoring.config import Config
from streams.clock import now_ms
from streams.settings import Settings, named_webhooks, redact_webhook
from streams.sink.metrics import SinkMetrics
from streams.sink.webhook import WebhookSender, alert_id, digest_payload, slack_payload
from streams.state import alert_work

log = logging.getLogger("engage.alert_sink")


def parse_alert(raw: bytes | None) -> dict[str, Any] | None:
    """The alert in a record, or None when the record cannot be one."""
    try:
        alert = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(alert, dict) or not isinstance(alert.get("rule"), str):
        return None
    if not isinstance(alert.get("customer_id"), str) and not (     # an account alert names its account
            alert.get("customer_id") is None and isinstance(alert.get("account_id"), str)):
        return None
    return alert if "as_of" in alert else None


class AlertSink:
    """`sender` is the default webhook; `routes` and `senders` (by webhook name) send customer alerts
    elsewhere; `store` (Redis) says what a team did about each condition (scoring.alert_work)."""

    def __init__(self, settings: Settings, sender: WebhookSender, metrics: SinkMetrics | None = None,
                 routes: tuple[AlertRoute, ...] = (), senders: Mapping[str, WebhookSender] | None = None,
                 store: Any = None) -> None:
        self.settings = settings
        self.sender = sender
        self.metrics = metrics or SinkMetrics()
        self.routes, self.senders, self.store = routes, dict(senders or {}), store
        self.group_id = f"{settings.app_id}-alert-sink"
        self.consumer: AIOKafkaConsumer | None = None
        self._failures_seen = 0
        self._sent: dict[str, list[int]] = {}        # route -> when it sent in the last hour

    async def run(self) -> None:
        """Deliver alerts until cancelled."""
        consumer = self.consumer = AIOKafkaConsumer(
            self.settings.alerts_topic, bootstrap_servers=self.settings.kafka_bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", **security.kafka_options(self.settings))
        await consumer.start()
        try:
            while True:
                try:
                    await self.send_due_digests(now_ms())
                except (RedisError, OSError) as exc:       # held in Redis: the next round sends it
                    log.warning("digests not sent now: %s", exc)
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for tp, records in batches.items():
                    for record in records:
                        await self._deliver(record.value, record.offset)
                        await consumer.commit({tp: record.offset + 1})
        finally:
            await consumer.stop()
            for sender in {self.sender, *self.senders.values()}:
                await sender.close()
            if self.store is not None:
                await self.store.close()

    async def _deliver(self, raw: bytes | None, offset: int) -> None:
        alert = parse_alert(raw)
        if alert is None:
            log.error("record at offset %d of %s is not an alert; skipped", offset, self.settings.alerts_topic)
            self.metrics.skipped.inc()
            return
        sender = await self._sender_for(alert)
        if sender is not None:
            await sender.deliver(slack_payload(alert))
            self.metrics.delivered.inc()

    async def _sender_for(self, alert: dict[str, Any]) -> WebhookSender | None:
        """Where a customer alert goes, or None when it is not sent: its condition is acknowledged or
        snoozed, or its route is over its limit (counted by reason). An account alert: the default."""
        cid = alert.get("customer_id")
        if cid is None:
            return self.sender
        rule, now, segment = str(alert["rule"]), now_ms(), None
        if self.store is not None:
            try:
                work, segment = await alert_work.as_recorded(self.store, cid, rule, alert_id(alert))
            except (RedisError, OSError) as exc:      # sent rather than lost: the state is advice
                log.warning("alert states not read (%s): sending %s", exc, alert_id(alert))
                work = None
            if not sends(work, now):
                assert work is not None
                self.metrics.not_sent.labels(reason=work.state.value).inc()
                return None
        owner = (alert.get("traits") or {}).get("owner")
        route = route_for(self.routes, rule, segment, owner if isinstance(owner, str) else None)
        if route is None:
            return self.sender
        if route.digest_minute is not None and self.store is not None:     # held for the day's message
            await self.store.redis.rpush(self.store.keys.digest(route.name), orjson.dumps(alert))
            self.metrics.digested.inc()
            return None
        if not within_limit(route, self._sent.setdefault(route.name, []), now):
            self.metrics.not_sent.labels(reason="rate_limited").inc()
            return None
        return self.senders[route.webhook]

    async def send_due_digests(self, now: int) -> None:
        """Each digest route's held alerts as one message once its time of day has come (then the
        next is due a day later). Held in Redis, so a restarted sink loses none; a sink stopped
        between the message and its clean-up sends that digest again (at-least-once, like alerts)."""
        if self.store is None:
            return
        for route in self.routes:
            if route.digest_minute is None:
                continue
            held, due_key = self.store.keys.digest(route.name), self.store.keys.digest_due(route.name)
            due = await self.store.redis.get(due_key)
            if due is not None and now < int(due):
                continue
            if due is not None:
                alerts = [orjson.loads(raw) for raw in await self.store.redis.lrange(held, 0, -1)]
                if alerts:
                    await self.senders[route.webhook].deliver(digest_payload(route.name, alerts))
                    self.metrics.digests.inc()
                    await self.store.redis.ltrim(held, len(alerts), -1)
            await self.store.redis.set(due_key, next_digest(route, now))

    async def metrics_payload(self) -> bytes:
        m = self.metrics
        failures = sum(sender.failures for sender in {self.sender, *self.senders.values()})
        m.failures.inc(failures - self._failures_seen)
        self._failures_seen = failures
        consumer = self.consumer
        assignment: set[TopicPartition] = consumer.assignment() if consumer else set()
        m.assigned.set(len(assignment))
        lag = 0
        for tp in assignment:
            end = consumer.highwater(tp)  # type: ignore[union-attr]
            if end is not None:
                lag += max(0, end - await consumer.position(tp))  # type: ignore[union-attr]
        m.lag.set(lag)
        return generate_latest(m.registry)


def web_app(sink: AlertSink) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        refusal = security.refusal(request.headers.get("Authorization"), sink.settings.api_token) \
            if sink.settings.metrics_auth else None
        if refusal is not None:
            return web.json_response(refusal[0], status=401, headers=refusal[1])
        return web.Response(body=await sink.metrics_payload(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "group": sink.group_id})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", health)
    return app


async def serve(settings: Settings, config: Config | None = None) -> None:
    """Run until SIGINT/SIGTERM: the consumer loop plus /metrics and /healthz on alert_sink_port."""
    from streams.state.store import RedisStore

    sender = WebhookSender(settings.alert_webhook_url, max_backoff_s=settings.alert_webhook_max_backoff_s)
    senders = {name: WebhookSender(url, max_backoff_s=settings.alert_webhook_max_backoff_s)
               for name, url in named_webhooks(settings.alert_webhooks).items()}
    sink = AlertSink(settings, sender, routes=config.alerts.routes if config else (), senders=senders,
                     store=RedisStore.from_settings(settings))
    runner = web.AppRunner(web_app(sink), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.alert_sink_port).start()
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(sink.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)   # cancel: a delivery may be mid-backoff
    log.info("alert sink: %s -> %s (group %s), /metrics on %s:%d%s", settings.alerts_topic,
             redact_webhook(settings.alert_webhook_url), sink.group_id, settings.web_host, settings.alert_sink_port,
             " (bearer token required)" if settings.metrics_auth else "")
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await runner.cleanup()
