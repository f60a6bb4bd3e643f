"""Fixtures shared by the edge's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.state.layout import Keys
from streams.state.store import RedisStore
from tests.streams.memory_redis import MemoryRedis
from tests.streams.support import WorkerProcess


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.services), "memory"])
def store_of(request):
    """A RedisStore per key prefix: on the session's real Redis, or on one in-memory Redis."""
    if request.param == "redis":
        stack = request.getfixturevalue("stack")
        return lambda prefix: RedisStore.from_url(stack.redis_url, prefix)
    memory = MemoryRedis()
    return lambda prefix: RedisStore(memory, Keys(prefix))


@pytest.fixture
def start(tmp_path):
    """Starts `engage worker` processes; every one is stopped when the test ends."""
    started: list[WorkerProcess] = []

    def run(stack, unique: str, name: str, env: dict[str, str] | None = None, port: int | None = None,
            config: Path | None = None) -> WorkerProcess:
        # the due sweep every second: live reads are exact at most a sweep interval behind (docs/reliability.md)
        started.append(WorkerProcess(stack, unique, tmp_path, name, sweep_s="1", extra_env=env, port=port,
                                     config=config))
        return started[-1]

    yield run
    for worker in started:
        worker.stop()
