"""Writes confirmed by Redis replicas (`ENGAGE_REDIS_MIN_REPLICAS`) before the worker goes on.

Redis replicates asynchronously: a primary answers a write before any replica has it, and a
primary lost before its replica had the write is replaced by a replica without it. The worker
then publishes outputs and commits Kafka offsets of events that Redis no longer holds. With
`min_replicas` above 0, a write counts as done only once `WAIT` says that many replicas have it.

`WAIT` covers the writes of the connection it is sent on, up to that connection's last write, and
redis-py's pool hands a command any of its connections. So each confirmed write is one pipeline
on one connection (on a cluster: on the node of the shard's slot): the script, a write of the
shard's `sync` key, then `WAIT`. The `sync` write makes the connection's offset the primary's
newest, so the `WAIT` also covers what an earlier attempt wrote on another connection: a retried
batch whose events are all duplicates writes nothing of its own, yet its first write must still
reach a replica before the batch's outputs are published and its offsets committed.

A batch may be written first and confirmed later, while the next one is scored (`confirm=False`,
then `confirm`). `WAIT` speaks only of the node it runs on, and a failover in between would have
it confirm the new primary, which lacks the write. So such a write leaves a mark of its own on
its node in the same pipeline (`<sync key>:<writer>`), and the confirmation checks, on the same
connection as its `WAIT`, that the node holds that mark; when it does not, `WriteNotFound` has
the batch written again.

Fewer replicas than asked within the timeout raise `ReplicasUnconfirmed`, a service error: the
batch is retried (the write is idempotent under its write tokens), `/readyz` says why, and
`engagement_redis_replica_waits_failed_total` counts it.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import RedisCluster


class ReplicasUnconfirmed(redis.exceptions.ConnectionError):
    """Fewer replicas than `ENGAGE_REDIS_MIN_REPLICAS` acknowledged a write within the timeout.

    A ConnectionError: like a lost primary, it passes (a replica catching up, a failover ending)
    and the write is retried, never quarantined."""


class WriteNotFound(redis.exceptions.ConnectionError):
    """A write made without confirmation is not on the node that holds its slot now: its primary
    was replaced since (a failover), and the write may be lost with it. A ConnectionError: the
    write is made again, never quarantined."""


MARK_TTL_S = 86_400     # a process's marks outlive any wait for a confirmation, and then go


class ReplicaWait:
    """Runs a script call and, when `replicas` > 0, confirms it on `replicas` replicas."""

    def __init__(self, client: Any, replicas: int = 0, timeout_ms: int = 2000) -> None:
        self.client = client
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.cluster = isinstance(client, RedisCluster)
        self.writer = uuid.uuid4().hex[:12]              # this process's marks: `<sync key>:<writer>`
        self.deferred: dict[str, str] = {}               # sync key -> the mark of its last write not yet confirmed

    async def call(self, script: Any, keys: list[str], args: list[Any], sync_key: str, confirm: bool = True) -> Any:
        """`script(keys, args)`, confirmed by the replicas of the node holding `sync_key` (a key
        in the slot of `keys`) when confirmation is asked for. `confirm=False`: not yet; the write
        then leaves a mark on its node (`deferred`), which `confirm` checks before it waits."""
        if self.replicas <= 0:
            return await script(keys=keys, args=args)
        if not confirm:
            return await self._pipeline(sync_key, script, keys, args, wait=False)
        return await self._pipeline(sync_key, script, keys, args)

    async def confirm(self, sync_key: str) -> None:
        """Confirm, with nothing else to write, that the replicas have every write made so far on
        the node of `sync_key` (a retried write that turned out to have nothing to do). After
        writes made with `confirm=False`, first checks that this node holds their mark: a write
        made on a primary since replaced (a failover) is not on the node confirmed now, and
        confirming that node would say nothing of it; `WriteNotFound` then asks for it again."""
        if self.replicas > 0:
            mark = self.deferred.get(sync_key)
            await self._pipeline(sync_key, None, [], [], mark=mark)
            if mark is not None and self.deferred.get(sync_key) == mark:
                del self.deferred[sync_key]     # confirmed: later confirmations need not check it

    def _mark_key(self, sync_key: str) -> str:
        return f"{sync_key}:{self.writer}"           # same slot as `sync_key`: the hash tag is first

    async def _pipeline(self, sync_key: str, script: Any, keys: list[str], args: list[Any], wait: bool = True,
                        mark: str | None = None) -> Any:
        """One pipeline on one connection to the node of `sync_key`: the script if any; then, when
        `wait`, the mark's check if any, the `sync` write and `WAIT`; else a new mark of this write."""
        for attempt in (1, 2):
            target: dict[str, Any] = {}
            if self.cluster:
                await self.client.initialize()          # a no-op once it knows the slots
                pipe = self.client.pipeline()
                target = {"target_nodes": self.client.get_node_from_key(sync_key)}
            else:
                pipe = self.client.pipeline(transaction=False)
            if script is not None:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)   # (a cluster pipeline refuses .evalsha)
            if not wait:
                written = uuid.uuid4().hex
                pipe.set(self._mark_key(sync_key), written, ex=MARK_TTL_S)
            else:
                if mark is not None:
                    pipe.get(self._mark_key(sync_key))
                pipe.set(sync_key, "1")
                pipe.execute_command("WAIT", self.replicas, self.timeout_ms, **target)
            # no redirection on a cluster: a command re-sent elsewhere would not be on WAIT's connection
            replies = await (pipe.execute(raise_on_error=False, allow_redirections=False) if self.cluster
                             else pipe.execute(raise_on_error=False))
            result = replies[0] if script is not None else None
            if isinstance(result, redis.exceptions.NoScriptError) and attempt == 1:
                # a promoted replica, or a restarted node, does not know the script yet
                await self.client.script_load(script.script)   # on a cluster: on every primary
                continue
            for reply in replies:
                if isinstance(reply, (redis.exceptions.MovedError, redis.exceptions.AskError)):
                    await self.client.nodes_manager.initialize()    # the slot moved: a failover
                    raise redis.exceptions.ClusterError(f"slot of {sync_key} moved: {reply}")
                if isinstance(reply, Exception):
                    raise reply
            if not wait:
                self.deferred[sync_key] = written
                return result
            if mark is not None:
                found = replies[1 if script is not None else 0]
                if (found.decode() if isinstance(found, bytes) else found) != mark:
                    raise WriteNotFound(f"a write to the node of {sync_key} is not on the node that holds its slot "
                                        f"now (its primary changed since): writing it again")
            acknowledged = int(replies[-1])
            if acknowledged < self.replicas:
                raise ReplicasUnconfirmed(await self._shortfall(sync_key, acknowledged))
            return result
        raise AssertionError("unreachable")

    async def _shortfall(self, sync_key: str, acknowledged: int) -> str:
        """Why a write is unconfirmed, naming the primary and the replicas it sees."""
        try:
            if self.cluster:
                node = self.client.get_node_from_key(sync_key)
                reply = await self.client.info("replication", target_nodes=node)
                info, primary = reply.get(node.name, reply), node.name
            else:
                info = await self.client.info("replication")
                pool = self.client.connection_pool
                if hasattr(pool, "get_master_address"):          # through Sentinel
                    host, port = await pool.get_master_address()
                else:
                    host, port = pool.connection_kwargs.get("host", "?"), pool.connection_kwargs.get("port", "?")
                primary = f"{host}:{port}"
            seen = [f"{v.get('ip')}:{v.get('port')} {v.get('state')} lag {v.get('lag')} s"
                    for k, v in sorted(info.items()) if k.startswith("slave") and isinstance(v, dict)]
        except Exception as exc:  # noqa: BLE001 - the reason stays useful without the details
            return (f"{acknowledged} of {self.replicas} Redis replicas confirmed a write within "
                    f"{self.timeout_ms} ms (replicas unknown: {exc})")
        return (f"{acknowledged} of {self.replicas} Redis replicas of {primary} confirmed a write within "
                f"{self.timeout_ms} ms; replicas connected: {', '.join(seen) or 'none'}")


async def replica_count(client: Any) -> int:
    """The fewest replicas connected to any primary (one Redis, or every primary of a cluster)."""
    if isinstance(client, RedisCluster):
        replies = await client.info("replication", target_nodes=RedisCluster.PRIMARIES)
        return min(int(info.get("connected_slaves", 0)) for info in replies.values())
    return int((await client.info("replication")).get("connected_slaves", 0))
