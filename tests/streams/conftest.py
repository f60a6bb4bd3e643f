"""Fixtures shared by the edge's tests."""

from __future__ import annotations

import pytest

from streams.layout import Keys
from streams.store import RedisStore
from tests.streams.memory_redis import MemoryRedis


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.services), "memory"])
def store_of(request):
    """A RedisStore per key prefix: on the session's real Redis, or on one in-memory Redis."""
    if request.param == "redis":
        stack = request.getfixturevalue("stack")
        return lambda prefix: RedisStore.from_url(stack.redis_url, prefix)
    memory = MemoryRedis()
    return lambda prefix: RedisStore(memory, Keys(prefix))
