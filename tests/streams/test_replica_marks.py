"""A write made without waiting for the replicas (`ReplicaWait.call(confirm=False)`) is confirmed
later only on the node that took it: after a failover the node holding the slot lacks the write's
mark, and the confirmation says `WriteNotFound` instead of confirming the new primary.

Edge logic on a recording client (one node's keys, switched to another node's to stand for a
failover); the same path against real replicas and a real failover: test_failover.py."""

from __future__ import annotations

import asyncio

import pytest

from streams.state.replicas import ReplicaWait, ReplicasUnconfirmed, WriteNotFound


class Node:
    """A Redis primary as a pipeline sees it: its keys, and how many replicas acknowledge a WAIT."""

    def __init__(self, replicas: int = 1) -> None:
        self.keys: dict[str, str] = {}
        self.replicas = replicas


class Pipe:
    def __init__(self, client: "Client") -> None:
        self.client, self.commands = client, []

    def execute_command(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.commands.append(args)

    def set(self, key, value, ex=None):  # type: ignore[no-untyped-def]
        self.commands.append(("SET", key, value))

    def get(self, key):  # type: ignore[no-untyped-def]
        self.commands.append(("GET", key))

    async def execute(self, raise_on_error=True):  # type: ignore[no-untyped-def]
        node, replies = self.client.node, []
        for command in self.commands:
            if command[0] == "EVALSHA":
                replies.append(1)
            elif command[0] == "SET":
                node.keys[command[1]] = command[2]
                replies.append(True)
            elif command[0] == "GET":
                replies.append(node.keys.get(command[1]))
            elif command[0] == "WAIT":
                replies.append(node.replicas)
        return replies


class Client:
    def __init__(self, node: Node) -> None:
        self.node = node

    def pipeline(self, transaction=False):  # type: ignore[no-untyped-def]
        return Pipe(self)

    async def info(self, section):  # type: ignore[no-untyped-def]
        return {"connected_slaves": self.node.replicas}


class Script:
    sha, script = "0" * 40, "return 1"


def test_a_deferred_write_is_confirmed_on_its_own_node_and_refused_on_a_node_that_lacks_it():
    async def run() -> None:
        old, new = Node(), Node()
        client = Client(old)
        wait = ReplicaWait(client, replicas=1, timeout_ms=10)
        assert await wait.call(Script(), ["k"], [], "p:{0}:sync", confirm=False) == 1
        await wait.confirm("p:{0}:sync")                     # the node that took it: confirmed
        assert wait.deferred == {}
        await wait.call(Script(), ["k"], [], "p:{0}:sync", confirm=False)
        client.node = new                                    # a failover: the slot's primary is another node
        with pytest.raises(WriteNotFound):
            await wait.confirm("p:{0}:sync")
        assert "p:{0}:sync" in wait.deferred                 # still unconfirmed: every later confirmation checks it
        with pytest.raises(WriteNotFound):
            await wait.confirm("p:{0}:sync")
        wait.deferred.clear()                                # the batch was written again, confirmed
        await wait.confirm("p:{0}:sync")

    asyncio.run(run())


def test_a_deferred_write_on_its_node_still_needs_the_replicas():
    async def run() -> None:
        node = Node(replicas=0)
        wait = ReplicaWait(Client(node), replicas=1, timeout_ms=10)
        await wait.call(Script(), ["k"], [], "p:{3}:sync", confirm=False)
        with pytest.raises(ReplicasUnconfirmed):
            await wait.confirm("p:{3}:sync")
        node.replicas = 1
        await wait.confirm("p:{3}:sync")

    asyncio.run(run())
