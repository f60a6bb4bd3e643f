"""RedisStore is what the writer, the publisher and the read API ask of a store.

`runtime_checkable` only checks that the methods exist; here every method of every
Protocol must exist on RedisStore with the same parameters (names, kinds, defaults, annotations), the
same async-ness, and the consumers must be typed with the Protocol, not the class.
"""

from __future__ import annotations

import inspect
import typing

import pytest

from streams.serve import api

from streams.state import ports

from streams.worker import publishing, writer
from streams.state.layout import Keys
from streams.state.store import RedisStore
from tests.streams.memory_redis import MemoryRedis

PROTOCOLS = [ports.BatchStore, ports.OutboxStore, ports.ReadStore]


def protocol_methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_redis_store_implements_every_method_of_the_protocol_as_declared(protocol):
    store = RedisStore(MemoryRedis(), Keys("ports"))
    assert isinstance(store, protocol)
    methods = protocol_methods(protocol)
    assert len(methods) >= 3
    for name in methods:
        declared, implemented = getattr(protocol, name), getattr(RedisStore, name)
        assert inspect.iscoroutinefunction(declared) == inspect.iscoroutinefunction(implemented), name
        want = [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(declared).parameters.values()]
        have = [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(implemented).parameters.values()]
        assert have == want, name


def test_a_store_missing_a_method_is_not_one():
    class Partial:
        async def load(self, customer_ids, event_ids=None, remembered=None): ...

    assert not isinstance(Partial(), ports.BatchStore) and not isinstance(Partial(), ports.ReadStore)


@pytest.mark.parametrize(("function", "protocol"), [
    (writer.BatchWriter.__init__, "BatchStore"), (publishing.Publisher.__init__, "OutboxStore"),
    (api.customer, "ReadStore"), (api.account, "ReadStore"), (api.leaderboard, "ReadStore"),
    (api.at_risk, "ReadStore"), (api.kpis, "ReadStore"), (api.routes, "ReadStore"),
    (api.customers_batch, "ReadStore"), (api.accounts_batch, "ReadStore"), (api.account_states, "ReadStore"),
    (api.customer_history_read, "ReadStore"), (api.account_history_read, "ReadStore"), (api.kpi_trend, "ReadStore"),
])
def test_the_edge_depends_on_the_protocol_not_on_redis(function, protocol):
    assert typing.get_type_hints(function)["store"] is getattr(ports, protocol)
