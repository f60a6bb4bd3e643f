"""RedisStore: the worker's and the API's reads and writes of the Redis layout (`streams.state.layout`).

A batch's changes are one script call per state shard (`lua/apply.lua`), applied only if no
customer's write token moved since it was read (a rebalance overlap); else the batch is
recomputed from fresh state. Cross-customer reads (leaderboards, at-risk, KPIs) read the
shards' sorted sets and sums, never every customer.

Longer than the other modules because it is the one place that talks to Redis: one method
per read or write the worker, the sweep, the outbox and the API make.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import struct
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio.cluster import RedisCluster

from scoring.aggregation import add_into, assemble, read_plan
from scoring.business import Aggregates
from scoring.config import Config
from scoring.deltas import CustomerDelta, Stored, segment_shares
from scoring.standing import ORDER_KEY_ID_OFFSET, Standing
from streams.state import alert_work, outbox
from streams.state.layout import (FORMAT, SHARDS, TOKEN_WIDTH, Keys, Ops, ShardTotals, decode_customer, decode_standing,
                                  write_delta)
from streams.state.outbox import Output
from streams.state.ports import Loaded
from streams.state.replicas import ReplicaWait, replica_count

if TYPE_CHECKING:
    from streams.settings import Settings

APPLY = (Path(__file__).parent / "lua" / "apply.lua").read_text(encoding="utf-8")
SUM_HASHES = (Path(__file__).parent / "lua" / "sum_hashes.lua").read_text(encoding="utf-8")
RANK_PROBE = (Path(__file__).parent / "lua" / "rank_probe.lua").read_text(encoding="utf-8")
OUTBOX_ACK = (Path(__file__).parent / "lua" / "outbox_ack.lua").read_text(encoding="utf-8")
OUTBOX_CLAIM = (Path(__file__).parent / "lua" / "outbox_claim.lua").read_text(encoding="utf-8")
READ_MANY = (Path(__file__).parent / "lua" / "read_many.lua").read_text(encoding="utf-8")
READ_GROUP = 256    # keys per read_many call on one Redis: ~1.5 ms of Redis time (1,000 keys held it 5-6 ms)


class LayoutError(RuntimeError):
    """The prefix holds state in another layout (or shard count) than this version writes."""


class ConfigSuperseded(RuntimeError):
    """Another worker adopted another scoring config since this one started (a rolling change):
    this worker's writes would mix two configs' standings, so none is applied."""


class EvictionPolicyError(RuntimeError):
    """The Redis may evict keys: it would drop customers' state without a word."""


class RedisStore:
    """`min_replicas` > 0: every write that a lost primary must not take with it (a batch's, the
    sweep's, an account's, the outbox's acknowledgements) returns only once that many replicas
    have it (`streams.state.replicas`)."""

    def __init__(self, client: Any, keys: Keys | None = None, min_replicas: int = 0,
                 replica_timeout_ms: int = 2000) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.replicas = ReplicaWait(client, min_replicas, replica_timeout_ms)
        self.config_fingerprint: str | None = None     # once adopted: every write requires it (adopt_config)
        self.conflicts = 0  # shard writes recomputed because another writer won
        self._random = random.SystemRandom()
        self.cluster = isinstance(client, RedisCluster)
        self._apply = client.register_script(APPLY)
        self._sum = client.register_script(SUM_HASHES)
        self._probe = client.register_script(RANK_PROBE)
        self._ack_outbox = client.register_script(OUTBOX_ACK)
        self._claim_outbox = client.register_script(OUTBOX_CLAIM)
        self._read_many = client.register_script(READ_MANY)

    @classmethod
    def from_url(cls, url: str, prefix: str = "eng", cluster: bool = False, **options: Any) -> RedisStore:
        """`options`: redis-py's (username, password, ssl_ca_certs ...); the URL's own win."""
        from streams.state.redis_client import redis_client_from_url

        return cls(redis_client_from_url(url, cluster, **options), Keys(prefix))

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """The store of `settings`: its URL, key prefix, ACL user, TLS CA and cluster mode."""
        from streams.state.redis_client import redis_client

        return cls(redis_client(settings), Keys(settings.key_prefix), settings.redis_min_replicas,
                   round(settings.redis_replica_timeout_s * 1000))

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def unreachable(self) -> str | None:
        """Why Redis cannot be reached (for /readyz), or None when it answers."""
        try:
            await self.ping()
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the reason
            return f"redis unreachable: {exc}"
        return None

    async def check_layout(self, claim: bool = True) -> None:
        """Refuse a prefix written in another layout; claim an empty one for this layout (a
        writer), or leave it be (a reader)."""
        meta = await self.redis.hgetall(self.keys.meta)
        if not meta:
            if await self.redis.exists(self.keys.old_layout):
                raise LayoutError(f"key prefix {self.keys.prefix!r} holds state format 1 (one JSON record per "
                                  f"customer); this version needs format {FORMAT}: rebuild it with `engage replay`")
            if claim:
                await self.redis.hset(self.keys.meta, mapping={"format": FORMAT, "shards": SHARDS})
            return
        found = (int(meta.get(b"format", 0)), int(meta.get(b"shards", 0)))
        if found != (FORMAT, SHARDS):
            raise LayoutError(f"key prefix {self.keys.prefix!r} holds state format {found[0]} with {found[1]} "
                              f"shards; this version writes format {FORMAT} with {SHARDS}: rebuild it with "
                              f"`engage replay`")

    # --- per-customer reads ------------------------------------------------------------------

    async def load(self, customer_ids: Iterable[str], event_ids: Mapping[str, list[str]] | None = None,
                   remembered: Mapping[str, tuple[str, Stored]] | None = None) -> Loaded:
        """The stored customers among `customer_ids` (with which of `event_ids` they have seen).

        A `remembered` customer (streams.state.cache: the write token it was written with, and
        what that write left) costs one GETRANGE of its token: while Redis holds that token, it
        is the stored customer; else it is read whole like the others (`Loaded.stale`).
        """
        ids = list(dict.fromkeys(customer_ids))
        wanted = event_ids or {}
        known = remembered or {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                if cid in known:
                    pipe.getrange(self.keys.facts(cid), 0, TOKEN_WIDTH - 1)
                else:
                    pipe.get(self.keys.facts(cid))
                if wanted.get(cid):
                    pipe.zmscore(self.keys.seen(cid), wanted[cid])
            replies = iter(await pipe.execute())
        loaded = Loaded({}, {})
        for cid in ids:
            if cid in known:
                token = next(replies)
            else:
                value = next(replies)
            scores = next(replies) if wanted.get(cid) else []
            # each write trims the ids to the dedup horizon behind the watermark, as the core does
            seen = {e: int(s) for e, s in zip(wanted.get(cid, []), scores) if s is not None}
            if cid in known:
                written, stored = known[cid]
                if not token or token.decode() != written:
                    loaded.stale.append(cid)
                    continue
                stored.state.seen, stored.state.seen_by_time = seen, None
                loaded.stored[cid], loaded.read_tokens[cid] = stored, written
                continue
            if not value:
                continue
            loaded.read_tokens[cid], loaded.stored[cid] = decode_customer(cid, value, seen)
        if loaded.stale:
            fresh = await self.load(loaded.stale, {cid: wanted[cid] for cid in loaded.stale if cid in wanted})
            loaded.stored.update(fresh.stored)
            loaded.read_tokens.update(fresh.read_tokens)
        return loaded

    def new_token(self) -> str:
        """A write token no other write carries (streams.state.cache): 62 random bits as
        TOKEN_WIDTH decimal digits (the first bytes of a customer's value)."""
        return f"{self._random.getrandbits(62):0{TOKEN_WIDTH}d}"

    async def write_shards(self, deltas: Mapping[int, Iterable[CustomerDelta]], read_tokens: Mapping[str, str],
                           outputs: Mapping[int, Iterable[Output]] | None = None,
                           claimable_at_ms: int = 0, token: str | None = None, confirm: bool = True) -> set[int]:
        """Apply each shard's deltas atomically, only if no customer changed since it was read
        (its write token is still the one in `read_tokens`), stamping them with `token` (default: a
        new one), together with the shard's `outputs` (into its outbox, claimable by a redrive
        from `claimable_at_ms`).

        Returns the shards written. On a single Redis every shard goes in one script call (all
        or none); on a cluster each shard is its own call on its own slot. `confirm=False`: the
        replicas are not waited for here; the caller confirms the shards later (`confirm`).
        """
        outputs = outputs or {}
        token = token or self.new_token()
        shards = list(dict.fromkeys([*deltas, *outputs]))
        if not self.cluster:
            ops = Ops()
            for shard in shards:
                self._ops(ops, shard, deltas.get(shard, ()), read_tokens, outputs.get(shard, ()), claimable_at_ms, token)
            return set(shards) if await self._run(ops, 0, confirm) else set()
        written = await asyncio.gather(*(self._write_one(shard, deltas.get(shard, ()), read_tokens,
                                                         outputs.get(shard, ()), claimable_at_ms, token, confirm)
                                         for shard in shards))
        return {shard for shard, ok in zip(shards, written) if ok}

    async def confirm(self, shards: Iterable[int]) -> None:
        """Wait until the replicas (`min_replicas`) have every write made so far to `shards`: those
        written with `confirm=False`. Raises `ReplicasUnconfirmed` (or a connection error) when they
        do not, or `WriteNotFound` when the node that holds a shard's slot now lacks the write (its
        primary was replaced since); the writes may then be lost, and must be made again."""
        written = set(shards)
        homes = written if self.cluster or not written else {0}    # on a single Redis one confirms all
        await asyncio.gather(*(self.replicas.confirm(self.keys.sync(shard)) for shard in homes))

    def forget_unconfirmed(self) -> None:
        """The writes made with `confirm=False` were made again, confirmed: stop checking their marks."""
        self.replicas.deferred.clear()

    async def _write_one(self, shard: int, deltas: Iterable[CustomerDelta], read_tokens: Mapping[str, str],
                         outputs: Iterable[Output], claimable_at_ms: int, token: str, confirm: bool = True) -> bool:
        ops = Ops()
        self._ops(ops, shard, deltas, read_tokens, outputs, claimable_at_ms, token)
        return await self._run(ops, shard, confirm)

    def _ops(self, ops: Ops, shard: int, deltas: Iterable[CustomerDelta], read_tokens: Mapping[str, str],
             outputs: Iterable[Output], claimable_at_ms: int, token: str) -> None:
        if self.config_fingerprint:
            ops.require_config(self.keys.config(shard), self.config_fingerprint)
        totals = ShardTotals.empty()
        deltas, outputs = list(deltas), list(outputs)
        for delta in deltas:
            shares = segment_shares(delta)
            write_delta(ops, self.keys, shard, delta, read_tokens.get(delta.customer_id, "0"), token, shares)
            totals.add(delta, shares)
        totals.write(ops, self.keys, shard)
        outbox.record(ops, *self.keys.outbox(shard), outputs, claimable_at_ms)
        alert_work.record(ops, self.keys, shard, outputs, deltas, claimable_at_ms)

    # --- the outbox (streams/state/outbox.py) --------------------------------------------------------

    async def acknowledge_outputs(self, outputs: Iterable[tuple[int, Output]]) -> int:
        """Delete published outputs from their shards' outboxes (each only while it still holds the
        output sent): one script call on a single Redis, one per shard on a cluster. Returns how
        many were deleted."""
        by_shard: dict[int, list[Output]] = {}
        for shard, output in outputs:
            by_shard.setdefault(shard, []).append(output)
        groups = [list(by_shard.items())] if not self.cluster else [[item] for item in by_shard.items()]
        calls = []
        for group in groups:
            keys = [key for shard, _ in group for key in self.keys.outbox(shard)]
            args = [x for i, (_, shard_outputs) in enumerate(group) for o in shard_outputs
                    for x in (2 * i + 1, o.field, o.output_id)]
            # a deletion lost with its primary would publish the output again
            calls.append(self.replicas.call(self._ack_outbox, keys, args, self.keys.sync(group[0][0])))
        return sum(await asyncio.gather(*calls))

    async def claim_outputs(self, shard: int, now_ms: int, lease_until_ms: int, limit: int) -> list[Output]:
        """Outputs of the shard's outbox that are claimable by now (their writer is gone or stuck),
        leased until `lease_until_ms` so that no other redrive takes them meanwhile."""
        flat = await self._claim_outbox(keys=list(self.keys.outbox(shard)), args=[now_ms, lease_until_ms, limit])
        return [Output.from_entry(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def outbox_size(self) -> int:
        """Outputs recorded and not yet acknowledged, over every shard."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.hlen(self.keys.outbox(shard)[0])
            return sum(await pipe.execute())

    async def check_eviction_policy(self) -> None:
        """Refuse a Redis (any node of a cluster) whose maxmemory-policy is not `noeviction`.

        Any other policy lets Redis delete keys under memory pressure: customers' counters,
        event ids and outbox entries would vanish without an error. INFO, not CONFIG GET,
        because managed Redis services often refuse CONFIG.
        """
        if self.cluster:
            replies = await self.redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
            nodes = {str(name): info for name, info in replies.items()}
        else:
            nodes = {"redis": await self.redis.info("memory")}
        for node, info in sorted(nodes.items()):
            policy = info.get("maxmemory_policy")
            if policy != "noeviction":
                where = "" if node == "redis" else f" on {node}"
                raise EvictionPolicyError(
                    f"Redis maxmemory-policy is {policy!r}{where}: it may evict keys and lose customers' state "
                    f"without a word; set maxmemory-policy noeviction (redis.conf, or CONFIG SET "
                    f"maxmemory-policy noeviction)")

    async def _run(self, ops: Ops, shard: int, confirm: bool = True) -> bool:
        """The apply script over `ops`, all in `shard`'s slot on a cluster; confirmed by the replicas
        (when asked for) even when there is nothing to write: an earlier attempt may have written."""
        if ops.empty():
            if confirm:
                await self.replicas.confirm(self.keys.sync(shard))
            return True
        answer = await self.replicas.call(self._apply, ops.keys, ops.arguments(), self.keys.sync(shard), confirm)
        if answer == -1:
            raise ConfigSuperseded(await self.superseded() or "the scoring config changed")
        ok = bool(answer)
        if not ok:
            self.conflicts += 1
        return ok

    async def check_replicas(self, min_replicas: int) -> str | None:
        """A warning when the Redis has replicas and no write waits for them (`min_replicas` 0), or
        has fewer than `min_replicas`; None when they agree."""
        connected = await replica_count(self.redis)
        if min_replicas == 0 and connected > 0:
            return (f"Redis has {connected} replica(s) per primary, and ENGAGE_REDIS_MIN_REPLICAS is 0: a primary "
                    f"lost before its replica has a write loses committed events; set it to 1")
        if connected < min_replicas:
            return (f"ENGAGE_REDIS_MIN_REPLICAS is {min_replicas}, and a Redis primary has {connected} replica(s) "
                    f"connected: writes wait (and /readyz says 503) until enough replicas are")
        return None

    async def due(self, shard: int, now_ms: int, limit: int) -> list[str]:
        raw = await self.redis.zrangebyscore(self.keys.shared(shard, "due"), "-inf", now_ms, start=0, num=limit)
        return [r.decode() for r in raw]

    async def adopt_config(self, fingerprint: str) -> bool:
        """Make `fingerprint` the scoring config every write of the prefix must be computed with, and
        this store's; True when it differs from the one stored before (the standings need re-scoring).

        Each shard keeps it too, so that the write script refuses, in the same atomic step, a write
        computed with another config: a worker still running the old config during a rolling change
        writes nothing from here on (`ConfigSuperseded`), and the standings never flap between two.
        """
        previous = await self.redis.hget(self.keys.meta, "config")
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.set(self.keys.config(shard), fingerprint)
            pipe.hset(self.keys.meta, "config", fingerprint)
            await pipe.execute()
        self.config_fingerprint = fingerprint
        return previous is not None and previous.decode() != fingerprint

    async def superseded(self) -> str | None:
        """Why this store's writes are refused, when a worker adopted another scoring config since
        (`adopt_config`); None while its own is the prefix's."""
        if not self.config_fingerprint:
            return None
        adopted = await self.redis.get(self.keys.config(0))
        if adopted is None or adopted.decode() == self.config_fingerprint:
            return None
        return (f"another worker adopted scoring config {adopted.decode()}; this worker runs {self.config_fingerprint} "
                f"and writes nothing: restart it with the current config")

    async def mark_all_due(self, now_ms: int, chunk: int = 1000) -> int:
        """Make every customer due now (a config change): the sweep then re-scores them all."""
        marked = 0
        for shard in range(SHARDS):
            index = self.keys.shared(shard, "rank")
            start = 0
            while True:
                members = await self.redis.zrange(index, start, start + chunk - 1)
                if not members:
                    break
                offset = ORDER_KEY_ID_OFFSET["bottom"]
                await self.redis.zadd(self.keys.shared(shard, "due"),
                                      {m.decode()[offset:]: now_ms for m in members}, lt=True)
                marked += len(members)
                start += chunk
        return marked

    async def forget_due(self, shard: int, customer_ids: list[str]) -> None:
        await self.redis.zrem(self.keys.shared(shard, "due"), *customer_ids)

    async def trim_activity(self, shard: int, before_ms: int, features: Iterable[str],
                            segments: Iterable[str] = ()) -> None:
        """Drop last-activity entries older than any window that counts them (dormant customers),
        of everyone and of each tracked segment."""
        features = tuple(features)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (self.keys.shared(shard, "active"), self.keys.shared(shard, "aer"),
                        *(self.keys.feature(shard, f) for f in features)):
                pipe.zremrangebyscore(key, "-inf", f"({before_ms}")
            for segment in segments:
                for key in (self.keys.of_segment(shard, "active", segment),
                            *(self.keys.feature(shard, f, segment) for f in features)):
                    pipe.zremrangebyscore(key, "-inf", f"({before_ms}")
            await pipe.execute()

    async def drop_old_totals(self, shard: int, oldest_bucket: int, segments: Iterable[str] = ()) -> int:
        """Delete the shard's per-bucket totals older than `oldest_bucket` (no read can reach them),
        of everyone and of each tracked segment; returns how many buckets went."""
        dropped = 0
        for segment in (None, *segments):
            index = self.keys.of_segment(shard, "buckets", segment)
            old = await self.redis.zrangebyscore(index, "-inf", f"({oldest_bucket}")
            if not old:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for bucket in old:
                    pipe.delete(self.keys.totals(shard, int(bucket), segment))
                pipe.zrem(index, *old)
                await pipe.execute()
            dropped += len(old)
        return dropped

    async def due_count(self, now_ms: int) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.zcount(self.keys.shared(shard, "due"), "-inf", now_ms)
            return sum(await pipe.execute())

    def _read_groups(self, customer_ids: Iterable[str]) -> list[list[str]]:
        """The customers split into read_many calls: per shard on a cluster (a script's keys share a
        slot); on one Redis in calls of up to READ_GROUP, whatever their shards. A call per shard
        cost a leaderboard of 10 up to 10 script calls, each with redis-py's per-command overhead (a
        fifth of `engage api`'s time serving /leaderboard and /at-risk, py-spy); a cap keeps a batch
        of thousands from holding Redis in one call."""
        ids = list(dict.fromkeys(customer_ids))
        if not self.cluster:
            return [ids[i:i + READ_GROUP] for i in range(0, len(ids), READ_GROUP)]
        by_shard: dict[int, list[str]] = {}
        for cid in ids:
            by_shard.setdefault(self.keys.shard_of(cid), []).append(cid)
        return list(by_shard.values())

    async def standings(self, customer_ids: list[str]) -> dict[str, Standing]:
        """The stored standings of those customers that have one (`_read_groups`' read_many calls)."""
        groups = self._read_groups(customer_ids)
        replies = await asyncio.gather(*(self._read_many(keys=[self.keys.facts(c) for c in cids], args=["GET"])
                                         for cids in groups))
        found = {cid: decode_standing(cid, raw) for cids, raws in zip(groups, replies) for cid, raw in zip(cids, raws)
                 if raw}
        return {cid: standing for cid, standing in found.items() if standing is not None}

    async def account_members(self, account_ids: list[str]) -> dict[str, list[str]]:
        """Each account's customers (sorted), from its per-shard sets: a read_many call per shard."""
        ids = list(dict.fromkeys(account_ids))
        replies = await asyncio.gather(*(self._read_many(keys=[self.keys.account(shard, a) for a in ids],
                                                         args=["SMEMBERS"]) for shard in range(SHARDS))) if ids else []
        members: dict[str, list[str]] = {a: [] for a in ids}
        for per_account in replies:
            for account_id, found in zip(ids, per_account):
                members[account_id].extend(m.decode() for m in found)
        return {a: sorted(members[a]) for a in account_ids}

    # --- cross-customer reads: sorted sets and sums, never a scan ------------------------------

    async def ranked(self, order: str, limit: int, segment: str | None = None) -> list[str]:
        """The first `limit` customers of an order across the shards: "bottom" (ES, CER, id
        ascending), "top" (ES and CER descending, id ascending) or "risk"; of one segment's
        customers only when `segment` is given (a segment with a leaderboard of its own).

        One sorted set per shard holds the bottom order; "top" reads it backwards and then
        completes the last group of equal (ES, CER) in each shard, whose ids must ascend: with its
        `limit` least ids, never the whole group (a group can be any size: every customer at the
        ES cap, or none scored yet).
        """
        offset = ORDER_KEY_ID_OFFSET[order]

        def key(shard: int) -> str:
            if segment is not None:
                return self.keys.segment_rank(shard, segment)
            return self.keys.shared(shard, "risk" if order == "risk" else "rank")

        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.zrange(key(shard), 0, limit - 1, desc=order == "top")
            replies = [[m.decode() for m in members] for members in await pipe.execute()]
        if order != "top":
            return [key[offset:] for key in sorted(k for keys in replies for k in keys)[:limit]]

        def top(keys: Iterable[str]) -> list[str]:
            merged = sorted(keys, key=lambda k: k[offset:])
            merged.sort(key=lambda k: k[:offset], reverse=True)
            return merged[:limit]

        first = top(k for keys in replies for k in keys)
        # a shard's last group can reach the answer only if it is not below the answer's last (ES,
        # CER) so far (what is not read yet ranks at most as high): with spread scores no shard's is,
        # and the answer needs no second round trip
        ties = [(shard, keys[-1][:offset]) for shard, keys in enumerate(replies)
                if len(keys) == limit and keys[-1][:offset] >= first[-1][:offset]]
        if not ties:
            return [key[offset:] for key in first]
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, prefix in ties:
                following = int(prefix, 16) + 1          # the first key past this (ES, CER)
                upper = f"({following:0{offset}x}" if following < 16 ** offset else "+"
                pipe.zrangebylex(key(shard), f"[{prefix}", upper, start=0, num=limit)
            for (shard, _), members in zip(ties, await pipe.execute()):
                replies[shard] = list(dict.fromkeys([*replies[shard], *(m.decode() for m in members)]))
        return [key[offset:] for key in top(k for keys in replies for k in keys)]

    async def every_ranked(self, segment: str | None = None, page: int = 500) -> AsyncIterator[list[str]]:
        """Every customer with a standing (or every one of a segment with a leaderboard of its own),
        in the bottom order (ES, CER, id ascending), `page` ids at a time: an export, never a scan.

        Each shard's rank set is read a page at a time from just past the last key read (so a
        write between pages shifts nothing), and the shards are merged. It is a live read: a
        customer whose score changes while it runs is listed once, where it was first met, and one
        that moves from ahead of the walk to behind it is not met at all.
        """
        offset = ORDER_KEY_ID_OFFSET["bottom"]
        keys = [self.keys.segment_rank(s, segment) if segment is not None else self.keys.shared(s, "rank")
                for s in range(SHARDS)]
        after = ["-"] * SHARDS
        buffered: list[list[str]] = [[] for _ in range(SHARDS)]      # each shard's read, not yet merged (reversed)
        more = [True] * SHARDS
        heads: list[tuple[str, int]] = []                            # (least unmerged key, shard): a heap
        seen: set[str] = set()
        out: list[str] = []
        while True:
            wanted = [s for s in range(SHARDS) if more[s] and not buffered[s]]
            if wanted:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for shard in wanted:
                        pipe.zrangebylex(keys[shard], after[shard], "+", start=0, num=page)
                    for shard, members in zip(wanted, await pipe.execute()):
                        read = [m.decode() for m in members]
                        more[shard] = len(read) == page
                        if read:
                            after[shard] = f"({read[-1]}"
                            buffered[shard] = read[::-1]
                            heapq.heappush(heads, (read[0], shard))
            while heads:
                key, shard = heapq.heappop(heads)
                buffered[shard].pop()
                if key[offset:] not in seen:
                    seen.add(key[offset:])
                    out.append(key[offset:])
                    if len(out) == page:
                        yield out
                        out = []
                if buffered[shard]:
                    heapq.heappush(heads, (buffered[shard][-1], shard))
                elif more[shard]:
                    break           # its next page may hold the next key: read it first
            if not heads and not any(more):
                if out:
                    yield out
                return

    async def customer_ids(self) -> list[str]:
        """Every customer with a standing, sorted: a full read (replay checks, tests), never on a hot path."""
        return sorted([cid async for page in self.every_ranked() for cid in page])

    async def count(self, name: str, segment: str | None = None) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.zcard(self.keys.of_segment(shard, name, segment))
            return sum(await pipe.execute())

    async def aggregates(self, as_of_ms: int, config: Config, segment: str | None = None) -> Aggregates:
        """The business KPIs' inputs at `as_of_ms`, summed over the shards (the core's read plan): of
        everyone, or of the customers in `segment` now (a segment with KPIs of its own)."""
        plan = read_plan(as_of_ms, config)
        keys = self.keys
        # the window's per-bucket totals are added up inside Redis (one reply per slot, not per bucket)
        groups = [[keys.totals(shard, b, segment) for shard in range(SHARDS) for b in plan.buckets]] if not self.cluster \
            else [[keys.totals(shard, b, segment) for b in plan.buckets] for shard in range(SHARDS)]
        summed = await asyncio.gather(*(self._sum(keys=group) for group in groups))
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(SHARDS):
                pipe.hgetall(keys.of_segment(shard, "sums", segment))
                for start in plan.active_since.values():
                    pipe.zcount(keys.of_segment(shard, "active", segment), start, "+inf")
                for feature in plan.features:
                    pipe.zcount(keys.feature(shard, feature, segment), plan.active_since["kpi"], "+inf")
            replies = iter(await pipe.execute())
        sums: dict[str, int] = {}
        totals: dict[str, int] = {}
        active = dict.fromkeys(plan.active_since, 0)
        users = dict.fromkeys(plan.features, 0)
        for flat in summed:
            add_into(totals, {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)})
        for _ in range(SHARDS):
            add_into(sums, {key.decode(): int(value) for key, value in next(replies).items()})
            for name in active:
                active[name] += next(replies)
            for feature in users:
                users[feature] += next(replies)
        return assemble(sums, totals, active, users, await self.median_es(sums.get("scored", 0), segment))

    async def median_es(self, scored: int, segment: str | None = None) -> float:
        """statistics.median of every scored customer's ES (of one segment's, when given), selected
        across the shards' rank sets.

        A customer outside the score distribution has no events in the window, so its ES is 0,
        the least there is: the k-th scored ES is the (unscored + k)-th of all.
        """
        if scored == 0:
            return 0.0
        unscored = await self.count("rank", segment) - scored
        if scored % 2:
            return await self._kth_es(unscored + scored // 2, segment)
        low, high = await asyncio.gather(self._kth_es(unscored + scored // 2 - 1, segment),
                                         self._kth_es(unscored + scored // 2, segment))
        return (low + high) / 2

    async def _kth_es(self, k: int, segment: str | None = None, ways: int = 16, gather_below: int = 512) -> float:
        """The k-th smallest ES (0-based) across the shards' rank sets, exactly.

        Each round (lua/rank_probe.lua: one call, or one per shard on a cluster) counts the keys
        below split points of the remaining ES range (`ZLEXCOUNT` is O(log n)) and keeps the part
        holding the k-th; once it holds one value or few keys, the k-th is known or picked from
        them. A few rounds at any n.
        """
        ranks = [self.keys.of_segment(shard, "rank", segment) for shard in range(SHARDS)]
        lo, hi, below = 0, _bits(100.0) + 1, 0     # ES bits in [lo, hi); `below` keys have bits < lo
        while hi - lo > 1:
            low_value, high_value = _float(lo), _float(hi - 1)
            # split points even in value (fast on spread scores) and in bits (fast near 0), and lo + 1
            inner = {_bits(low_value + (high_value - low_value) * i / ways) for i in range(1, ways)}
            inner |= {lo + (hi - lo) * i // ways for i in range(1, ways)} | {lo + 1}
            points = sorted({p for p in inner if lo < p < hi} | {hi})
            args = [f"{lo:016x}", f"{hi:016x}", *(f"{point:016x}" for point in points)]
            groups = [ranks] if not self.cluster else [[rank] for rank in ranks]
            probes = await asyncio.gather(*(self._probe(keys=group, args=args) for group in groups))
            ends = {int(bytes(end[:16]), 16) for probe in probes for end in probe[:2] if end}
            if len(ends) == 1:                      # one value left in the range: it is the k-th
                return _float(ends.pop())
            counts = [sum(probe[2 + i] for probe in probes) for i in range(len(points))]
            start, start_count = lo, below
            for i, point in enumerate(points):
                under = counts[i]
                if under >= k + 1:
                    break
                start, start_count = point, under
            lo, hi, below = start, point, start_count
            if under - below <= gather_below:
                return await self._pick(ranks, lo, hi, k - below)
        return _float(lo)

    async def _pick(self, ranks: list[str], lo: int, hi: int, index: int) -> float:
        """The index-th smallest ES among the keys of `ranks` with ES bits in [lo, hi), read whole."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for rank in ranks:
                pipe.zrangebylex(rank, f"[{lo:016x}", f"({hi:016x}")
            keys = [m[:16] for members in await pipe.execute() for m in members]
        return _float(sorted(int(key, 16) for key in keys)[index])

    # --- recent alerts (the live page) ---------------------------------------------------------

    async def push_recent_alerts(self, alerts: list[bytes], keep: int = 100) -> None:
        """Newest first, capped: what the live page shows (the alerts topic has them all)."""
        if alerts:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(self.keys.recent_alerts, *alerts)
                pipe.ltrim(self.keys.recent_alerts, 0, keep - 1)
                await pipe.execute()

    async def record_kpi_trend(self, bucket: int, point: Mapping[str, object], oldest_bucket: int,
                               segment: str | None = None) -> None:
        """The bucket's trend point (the newest record wins), and the points before `oldest_bucket`
        dropped: of everyone, or of one segment with KPIs of its own."""
        key = self.keys.trend(segment)
        stale = [f for f in await self.redis.hgetall(key) if int(f) < oldest_bucket]   # ~31 small fields
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(bucket), orjson.dumps(point))
            if stale:
                pipe.hdel(key, *stale)
            await pipe.execute()

    async def kpi_trend(self, segment: str | None = None) -> dict[int, dict[str, object]]:
        return {int(f): orjson.loads(v) for f, v in (await self.redis.hgetall(self.keys.trend(segment))).items()}

    async def pop_touched_accounts(self, shard: int, limit: int) -> list[str]:
        """Up to `limit` accounts the shard's writes marked for evaluation, taken out of the set."""
        popped = await self.redis.spop(self.keys.shared(shard, "acct.touched"), limit)
        return sorted(a.decode() for a in popped or ())

    async def account_snapshots(self, account_ids: list[str]) -> dict[str, tuple[str, bytes | None]]:
        """Each account's (write token, snapshot JSON or None)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                key = self.keys.account_snapshot(account_id)[1]
                pipe.hget(key, "v")
                pipe.hget(key, "d")
            replies = iter(await pipe.execute())
        return {a: ((next(replies) or b"0").decode(), next(replies)) for a in account_ids}

    async def write_account(self, account_id: str, read_token: str, snapshot: bytes, outputs: Iterable[Output],
                            claimable_at_ms: int, token: str) -> tuple[int, bool]:
        """The account's new snapshot and its alerts (into its home shard's outbox), atomically and only
        if no other worker wrote the snapshot since `read_token` was read: (home shard, written)."""
        home, key = self.keys.account_snapshot(account_id)
        ops = Ops()
        if self.config_fingerprint:
            ops.require_config(self.keys.config(home), self.config_fingerprint)
        ops.check(key, read_token)
        ops.add("HSET", key, "v", token)
        ops.add("HSET", key, "d", snapshot)
        outbox.record(ops, *self.keys.outbox(home), outputs, claimable_at_ms)
        return home, await self._run(ops, home)

    async def recent_alerts(self, limit: int) -> list[dict[str, object]]:
        return [orjson.loads(raw) for raw in await self.redis.lrange(self.keys.recent_alerts, 0, limit - 1)]


def _bits(value: float) -> int:
    return struct.unpack(">Q", struct.pack(">d", value))[0]


def _float(bits: int) -> float:
    return struct.unpack(">d", struct.pack(">Q", bits))[0]
