"""Which failures the worker outlasts by retrying, and which it quarantines (no services needed)."""

from __future__ import annotations

import asyncio

import aiokafka.errors
import pytest
import redis.exceptions

from streams.worker.failures import QUARANTINE_AFTER, STOPPED_FAILING, Deterministic, Retrier, is_service_error
from streams.worker.metrics import Metrics


@pytest.mark.parametrize("exc", [
    ConnectionRefusedError(), TimeoutError(), asyncio.TimeoutError(),
    redis.exceptions.ConnectionError("Connection closed by server."),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"),
    redis.exceptions.ClusterDownError("The cluster is down"),
    redis.exceptions.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
    aiokafka.errors.KafkaTimeoutError(), aiokafka.errors.NotLeaderForPartitionError(),
])
def test_service_trouble_is_retried_for_as_long_as_it_lasts(exc):
    assert is_service_error(exc)


@pytest.mark.parametrize("exc", [
    redis.exceptions.ResponseError("ERR user_script:12: Script attempted to access nonexistent global variable 'x'"),
    redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis.exceptions.DataError("Invalid input of type: 'NoneType'."),
    KeyError("w"), ValueError("corrupt stored record"), TypeError("a bug"),
])
def test_a_failure_no_retry_can_fix_is_not_a_service_error(exc):
    """A Redis reply error from a script bug is raised by redis-py, yet it is no service trouble."""
    assert not is_service_error(exc)


def retrier() -> Retrier:
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    return Retrier(Metrics({}), sleep=no_wait)


def failing(errors: list[BaseException]):
    """A step that raises each of `errors` in turn, then returns 'done'; counts its calls."""
    calls = []

    async def step() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "done"

    return step, calls


def test_a_script_error_repeating_is_given_up_as_deterministic():
    retry = retrier()
    bug = redis.exceptions.ResponseError("ERR Error running script: attempt to compare nil with number")
    step, calls = failing([bug] * 10)
    with pytest.raises(Deterministic) as raised:
        asyncio.run(retry("redis", step, QUARANTINE_AFTER))
    assert len(calls) == QUARANTINE_AFTER and "ResponseError" in raised.value.detail
    assert retry.failing and retry.metrics.retries._value.get() == QUARANTINE_AFTER - 1


def test_service_errors_never_count_towards_quarantine_and_flags_clear_on_success():
    retry = retrier()
    oom = redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")
    bug = ValueError("once")
    # two bugs in a row, separated by service errors: never QUARANTINE_AFTER in a row
    step, calls = failing([bug, bug, redis.exceptions.ConnectionError(), bug, bug, oom, oom])
    states = []
    original = retry.sleep

    async def observe(delay: float) -> None:
        states.append((retry.failing, retry.out_of_memory))
        await original(delay)

    retry.sleep = observe
    assert asyncio.run(retry("redis", step, QUARANTINE_AFTER)) == "done"
    assert len(calls) == 8
    assert states[-1] == (True, True)                       # while Redis was full: unready, naming OOM
    assert (retry.failing, retry.out_of_memory) == (False, False)
    assert retry.metrics.redis_out_of_memory._value.get() == 2


def test_without_a_limit_even_a_bug_is_retried():
    """Publishing has no limit: an output is never dropped (it stays in the outbox meanwhile)."""
    step, calls = failing([TypeError("x")] * (QUARANTINE_AFTER + 2))
    assert asyncio.run(retrier()("publish", step)) == "done" and len(calls) == QUARANTINE_AFTER + 3


def test_a_worker_stopping_while_a_step_fails_exits_at_once_leaving_the_batch_uncommitted():
    """Faust stops its producer before the agents: a publish retried then never succeeds, and the
    worker would never exit (Kubernetes would SIGKILL it); raising instead would let Faust ack the
    batch on its way out. The process exits at once, as a SIGKILL would, and the batch is
    consumed again by the partition's next owner."""
    stopping, exits = [], []

    def exit_now(status: int) -> None:
        exits.append(status)
        raise SystemExit(status)

    retry = Retrier(Metrics({}), sleep=lambda _: asyncio.sleep(0), stopping=lambda: bool(stopping), exit=exit_now)
    not_ready = RuntimeError("Producer service not yet started")
    step, calls = failing([not_ready] * 3)
    assert asyncio.run(retry("publish", step)) == "done" and len(calls) == 4 and exits == []   # running: retried
    stopping.append(True)
    step, calls = failing([not_ready] * 3)
    with pytest.raises(SystemExit):
        asyncio.run(retry("publish", step))
    assert len(calls) == 1 and exits == [STOPPED_FAILING]
