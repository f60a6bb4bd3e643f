"""The one place a Redis client is made from the settings: a single Redis or a Redis Cluster.

A Redis Cluster needs redis-py's cluster client, not `Redis`: it learns which node holds
which hash slot from CLUSTER SLOTS, sends each command to that node and follows MOVED/ASK
redirections; a plain `Redis` on a cluster node fails on every key the node does not own.
`ENGAGE_REDIS_CLUSTER=true` picks it, with `ENGAGE_REDIS_URL` naming any node (the startup
node). Both get the same security options (`streams.security.redis_options`).

In a cluster, every multi-key command, MULTI/EXEC transaction (WATCH included) and Lua script
must keep its keys in one hash slot: give them one hash tag (`{customer}`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel

from streams.security import redis_options
from streams.settings import Settings, redis_database

# Every command the project sends to Redis (worker, replay, score, the local stack's probe), and no
# other: a locked-down deployment grants its ACL user only these (the secure local stack does, so
# the tests prove the list is enough; redis-py's CLIENT SETINFO on connect may be refused: it
# ignores that).
REDIS_COMMANDS = ("ping", "select", "exists", "del", "get", "set", "getrange", "hget", "hmget", "hgetall", "hset", "hincrby", "hdel",
                  "zadd", "zrem", "zrange", "zrevrange", "zrangebyscore", "zrangebylex", "zrevrangebylex", "zlexcount",
                  "zcount", "zcard", "zmscore", "zremrangebyscore", "sadd", "srem", "smembers", "spop",
                  "lpush", "ltrim", "lrange", "multi", "exec", "discard", "evalsha", "eval", "script|load",
                  "scan", "unlink", "acl|whoami", "hlen", "info", "wait")


def redis_client(settings: Settings, **options: Any) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """The asyncio client of `settings.redis_url`: a cluster client with `settings.redis_cluster`, the
    Sentinels' primary with `settings.redis_sentinels`."""
    if settings.redis_sentinels:
        return sentinel_primary(settings, **options)
    return redis_client_from_url(settings.redis_url, settings.redis_cluster, **{**redis_options(settings), **options})


def sentinel_primary(settings: Settings, **options: Any) -> redis.asyncio.Redis:
    """A client of whichever Redis the Sentinels name primary of `settings.redis_sentinel_master`.

    redis-py's Sentinel pool asks the Sentinels for the primary on every new connection and drops
    its connections when the server it reaches is no longer a primary, so a failover costs the
    commands in flight (retried like any lost connection), never a restart. `redis_url` gives the
    database and credentials; its host is not used.
    """
    url = urlsplit(settings.redis_url)
    database = int(redis_database(settings.redis_url) or 0)
    credentials = {**({"username": url.username} if url.username else {}),
                   **({"password": url.password} if url.password else {})}
    sentinels = [(host, int(port)) for host, port in (part.rsplit(":", 1) for part in settings.redis_sentinels.split(","))]
    sentinel = redis.asyncio.sentinel.Sentinel(sentinels, socket_timeout=5, socket_connect_timeout=5)
    return sentinel.master_for(settings.redis_sentinel_master, db=database,
                               **{**credentials, **redis_options(settings), **options})


def redis_client_from_url(url: str, cluster: bool, **options: Any
                          ) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
    """`Redis.from_url`, or `RedisCluster.from_url` (`url` = any node) when `cluster`; `options`
    are redis-py's keyword arguments (the security ones: `streams.security.redis_options`)."""
    if cluster:
        return redis.asyncio.cluster.RedisCluster.from_url(url, **options)
    return redis.asyncio.Redis.from_url(url, **options)
