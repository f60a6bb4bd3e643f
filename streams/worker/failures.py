"""Which failures a retry outlasts, and which it never will.

A batch's steps (its Redis write, its publishing) are retried while a service is in trouble,
for as long as that lasts. A failure that repeats the same way every time (a bug, a corrupt
stored record, a script Redis refuses to run) would block its partition for good, so the
worker quarantines such a batch after QUARANTINE_AFTER in a row (see `streams.worker.lifecycle`). The
exception's class decides which is which, never the module it was raised in: a Redis reply
error from a script is a Redis exception, and no retry fixes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiokafka.errors
import kafka.errors
import redis.exceptions

from streams.state.replicas import ReplicasUnconfirmed
from streams.state.store import ConfigSuperseded
from streams.worker.metrics import Metrics

log = logging.getLogger("engage.worker")
T = TypeVar("T")

STOPPED_FAILING = 75   # the exit status of a worker stopped while its batch could not be written
QUARANTINE_AFTER = 3   # the same non-service error this many times in a row: quarantine, don't block

SERVICE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, TimeoutError,                       # the network, sockets, asyncio timeouts
    redis.exceptions.ConnectionError,            # refused, lost, authentication, LOADING, too many clients
    redis.exceptions.TimeoutError,
    redis.exceptions.InvalidResponse,            # a connection that broke mid-reply
    redis.exceptions.OutOfMemoryError,           # at maxmemory: passes when memory is freed
    redis.exceptions.ReadOnlyError,              # a replica being promoted
    redis.exceptions.TryAgainError,              # cluster: a slot being migrated
    redis.exceptions.ClusterError,               # cluster: CLUSTERDOWN, MASTERDOWN, too many redirections
    redis.exceptions.RedisClusterException,      # cluster: a slot not covered (yet)
    redis.exceptions.NoPermissionError,          # an ACL that lacks a command: fix the deployment, lose nothing
    redis.exceptions.WatchError,                 # another writer won a race
    ConfigSuperseded,                            # a rolling config change: wait to be replaced, lose nothing
    aiokafka.errors.KafkaError,                  # the broker: leader elections, timeouts, disconnections
    kafka.errors.KafkaError,
)
BUSY_REPLY = "BUSY"   # Redis runs another client's long script: a plain ResponseError, yet it passes


def is_service_error(exc: BaseException) -> bool:
    """Redis, Kafka or network trouble: it passes, so the step is retried for as long as it lasts."""
    return isinstance(exc, SERVICE_ERRORS) or (
        isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(BUSY_REPLY))


class Deterministic(Exception):
    """A step failed the same way repeatedly, for a reason no retry will fix."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Retrier:
    """Runs a step until it succeeds, backing off exponentially (to 5 s), and remembers
    whether the last step is failing (for /readyz), whether Redis refused it as full, and why it
    cannot go on (replicas that did not confirm it, a newer scoring config)."""

    def __init__(self, metrics: Metrics, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 stopping: Callable[[], bool] = lambda: False, exit: Callable[[int], Any] = os._exit) -> None:
        self.metrics = metrics
        self.sleep = sleep
        # The worker is shutting down while a step fails (Faust stops its producer before the agents,
        # so a publish never succeeds; a superseded config's write never will): retrying would keep
        # the process alive until it is killed, and giving up by raising would let Faust ack the
        # batch on its way out, committing offsets whose effects are not in Redis. So the process
        # exits at once, like a SIGKILL: the batch stays uncommitted, its outputs in the outbox, and
        # the partition's next owner consumes it again (tests/streams/test_faults.py: exact).
        self.stopping = stopping
        self.exit = exit
        self.failing = False
        self.out_of_memory = False     # the last failure was Redis refusing a write at maxmemory
        self.unready = ""              # why the last failure makes the worker unready: replicas, a newer config

    async def __call__(self, what: str, step: Callable[[], Awaitable[T]], give_up_after: int | None = None) -> T:
        """`step()` until it succeeds; raises Deterministic after `give_up_after` non-service errors in a row."""
        attempt = repeated = 0
        while True:
            try:
                result = await step()
                self.failing = self.out_of_memory = False
                self.unready = ""
                return result
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, back off, try again
                if self.stopping():
                    log.error("%s step failed while the worker stops (%s: %s): exiting now, leaving the batch "
                              "uncommitted for the partition's next owner", what, type(exc).__name__, exc)
                    logging.shutdown()
                    self.exit(STOPPED_FAILING)
                attempt += 1
                self.out_of_memory = isinstance(exc, redis.exceptions.OutOfMemoryError)
                if self.out_of_memory:
                    self.metrics.redis_out_of_memory.inc()
                self.unready = str(exc) if isinstance(exc, (ReplicasUnconfirmed, ConfigSuperseded)) else ""
                if isinstance(exc, ReplicasUnconfirmed):
                    self.metrics.redis_unreplicated.inc()
                repeated = 0 if is_service_error(exc) else repeated + 1
                if give_up_after is not None and repeated >= give_up_after:
                    raise Deterministic(f"{type(exc).__name__}: {exc}"[:500]) from exc
                self.failing = True
                self.metrics.retries.inc()
                log.exception("%s step failed (attempt %d); retrying the same batch", what, attempt)
                await self.sleep(min(5.0, 0.1 * 2 ** min(attempt, 6)))
