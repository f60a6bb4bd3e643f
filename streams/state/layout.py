"""The Redis layout: keys, what a stored customer looks like, and the commands that write a delta.

State lives in Redis's own structures, written as the core's deltas, one slot per write.

Every key of a customer, and the shared aggregates its writes touch, carry the hash tag of
the customer's *state shard* (`crc32(customer_id) % SHARDS`), so one batch's changes to the
customers of a shard are one atomic script call on one Redis Cluster slot. Cross-customer
reads add up the shards. Key layout (`<p>` = the key prefix, `{s}` = the shard 0..SHARDS-1):

    <p>:meta                     HASH   format, shards (the layout this prefix was written in)
    <p>:{s}:f:<customer>         STRING the customer: its write token (19 digits, new with every
                                        write), its standing and its record (facts, per-bucket counters,
                                        open sessions, alert memory), MessagePack (encode_customer)
    <p>:{s}:seen:<customer>      ZSET   event ids within the dedup horizon, score = event time
    <p>:{s}:rank                 ZSET   every customer, ordered by key: ES, CER, id (leaderboards,
                                        the median ES)
    <p>:{s}:rank.seg:<segment>   ZSET   the same for one segment's customers (segments with a scorecard
                                        or listed in kpis.segments)
    <p>:{s}:risk                 ZSET   customers with an active alert, lowest ES first
    <p>:{s}:active               ZSET   customer -> newest activity-type event time
    <p>:{s}:aer                  ZSET   customer -> newest AER-activity event time
    <p>:{s}:members              ZSET   current members -> start of their membership
    <p>:{s}:feature:<key>        ZSET   customer -> newest use of the feature ("*" = any)
    <p>:{s}:due                  ZSET   customer -> when time alone next changes its standing
    <p>:{s}:sums                 HASH   standings summed (scoring.standing.SUMS)
    <p>:{s}:t:<bucket>           HASH   the bucket's counters summed over customers (dropped by the
                                        sweep once past the retention)
    <p>:{s}:buckets              ZSET   the buckets that have a :t: hash (score = bucket)
    <p>:{s}:sums.seg:<segment>, :active.seg:<segment>, :feature.seg:<segment>:<key>,
    <p>:{s}:t.seg:<segment>:<bucket>, :buckets.seg:<segment>
                                        the same aggregates for the customers in one segment now (those
                                        with a leaderboard of their own): KPIs per segment
    <p>:{s}:alert:<id>           HASH   a customer alert to work: v (the alert), t (recorded), c, r, s (segment)
    <p>:{s}:alerts               ZSET   the shard's alerts by when recorded (GET /alerts)
    <p>:{s}:alerts.work:<customer>, :alerts.resolved:<customer>
                                 HASH   rule -> what was done about its condition; when it last ended
    <p>:{s}:acct:<account>       SET    the account's customers (by their newest account_id)
    <p>:{s}:acct.touched         SET    accounts whose users' ES, tier or membership changed since the
                                        sweep last evaluated them (account-level alerts)
    <p>:{h}:acct.snap:<account>  HASH   v: write token, d: the account's last alert evaluation (JSON;
                                        h: the account's home shard, crc32("account:" + id) % SHARDS)
    <p>:{s}:out                  HASH   the outbox: outputs written with the shard's changes and not yet
                                        acknowledged by Kafka (streams/state/outbox.py)
    <p>:{s}:out:at               ZSET   outbox field -> when a redrive may claim it
    <p>:{s}:config               STRING the scoring config's fingerprint every write of the shard needs
    <p>:{s}:sync                 STRING written before a WAIT for replicas (streams.state.replicas)
    <p>:{g}:alerts:recent        LIST   the last 100 alerts (JSON), newest first
    <p>:{g}:digest:<route>       LIST   alerts held for a route's daily digest (`engage alert-sink`); :due its next time

Longer than the other modules because the keys, a customer's encoding and the commands of a delta
are one contract, the one `docs/redis-layout.md` describes to other services.

A write is optimistic (`streams.state.store`): the script applies a shard's changes only if no customer's write
token moved since it was read (a rebalance overlap); else the batch is recomputed from fresh state. The token
also tells a worker whether the customer it remembers (streams.state.cache) is still the stored one.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from scoring import formulas
from scoring.account_alerts import accounts_to_evaluate
from scoring.aggregation import add_delta
from scoring.alerts import RuleState, Snapshot
from scoring.deltas import CustomerDelta, SegmentShare, Stored
from scoring.standing import SUMS, Standing, bottom_key, risk_key
from scoring.state import COUNT_PREFIX, CustomerState, RunningCounts, SessionStats

FORMAT = 7   # 7: per-segment KPI aggregates; 6: a customer is one string; 5: one packed record in a hash; 4: sessions_activated counted
SHARDS = 16


@dataclass(frozen=True)
class Keys:
    prefix: str = "eng"

    @staticmethod
    def shard_of(customer_id: str) -> int:
        return zlib.crc32(customer_id.encode("utf-8")) % SHARDS

    def tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def facts(self, cid: str) -> str:
        return f"{self.tag(self.shard_of(cid))}:f:{cid}"

    def seen(self, cid: str) -> str:
        return f"{self.tag(self.shard_of(cid))}:seen:{cid}"

    def alert(self, shard: int, alert_id: str) -> str:
        """A customer alert as recorded for the team to work (in its customer's shard)."""
        return f"{self.tag(shard)}:alert:{alert_id}"

    def alert_work(self, cid: str) -> str:
        """rule -> what was done about the customer's condition (scoring.alert_work.Work, JSON)."""
        return f"{self.tag(self.shard_of(cid))}:alerts.work:{cid}"

    def alert_resolved(self, cid: str) -> str:
        """rule -> when the customer's condition last ended (its alerts up to then are resolved)."""
        return f"{self.tag(self.shard_of(cid))}:alerts.resolved:{cid}"

    def shared(self, shard: int, name: str) -> str:
        """rank, risk, active, aer, members, due, sums, buckets"""
        return f"{self.tag(shard)}:{name}"

    def segment_rank(self, shard: int, segment: str) -> str:
        """The rank order of one segment's customers (segments with a leaderboard of their own)."""
        return self.of_segment(shard, "rank", segment)

    def of_segment(self, shard: int, name: str, segment: str | None) -> str:
        """A shared aggregate (rank, sums, active, buckets), or one segment's own when `segment` is given."""
        return self.shared(shard, name) if segment is None else f"{self.tag(shard)}:{name}.seg:{segment}"

    def account_snapshot(self, account_id: str) -> tuple[int, str]:
        """(home shard, key) of an account's alert snapshot: in the slot of the shard its alerts'
        outbox entries go to, so the snapshot and the alerts are one atomic write."""
        home = self.shard_of(f"account:{account_id}")
        return home, f"{self.tag(home)}:acct.snap:{account_id}"

    def feature(self, shard: int, key: str, segment: str | None = None) -> str:
        return f"{self.tag(shard)}:feature:{key}" if segment is None else f"{self.tag(shard)}:feature.seg:{segment}:{key}"

    def totals(self, shard: int, bucket: int, segment: str | None = None) -> str:
        return f"{self.tag(shard)}:t:{bucket}" if segment is None else f"{self.tag(shard)}:t.seg:{segment}:{bucket}"

    def account(self, shard: int, account_id: str) -> str:
        return f"{self.tag(shard)}:acct:{account_id}"

    def config(self, shard: int) -> str:
        """The fingerprint of the scoring config the shard's writes must be computed with."""
        return f"{self.tag(shard)}:config"

    def sync(self, shard: int) -> str:
        """Written before each WAIT of a confirmed write (`streams.state.replicas`)."""
        return f"{self.tag(shard)}:sync"

    def outbox(self, shard: int) -> tuple[str, str]:
        """The shard's outbox hash and its claim-time zset."""
        return f"{self.tag(shard)}:out", f"{self.tag(shard)}:out:at"

    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def old_layout(self) -> str:
        """A key only format 1 (one JSON record per customer) wrote."""
        return f"{self.prefix}:{{g}}:customers"

    @property
    def recent_alerts(self) -> str:
        return f"{self.prefix}:{{g}}:alerts:recent"

    @property
    def kpi_trend(self) -> str:
        return f"{self.prefix}:{{g}}:kpis:trend"

    def digest(self, route: str) -> str:
        """A digest route's alerts held for its next daily message (LIST, JSON)."""
        return f"{self.prefix}:{{g}}:digest:{route}"

    def digest_due(self, route: str) -> str:
        """When a digest route's next message is due (epoch ms)."""
        return f"{self.digest(route)}:due"

    def trend(self, segment: str | None) -> str:
        """The KPI trend of everyone, or of one segment with KPIs of its own."""
        return self.kpi_trend if segment is None else f"{self.kpi_trend}.seg:{segment}"


# --- the customer: one string, its write token, standing and record, rewritten whole -------------

TOKEN_WIDTH = 19      # a write token: 62 random bits as 19 decimal digits, the value's first bytes


def encode_customer(token: str, stored: Stored) -> bytes:
    """The customer's value: its write token, then two MessagePack values, its standing (nil
    before it has one) and its record: everything the core keeps of it but its recent event ids,
    and the due time written with it, as a positional array, counter names once each in a table
    that the buckets index (a customer's ~50 counters share ~15 names). Counters at zero are left
    out, as a bucket with none. The running window counts go with it, so that a customer loaded
    again scores without summing its window (a value written before them had none: they are
    summed once, as before). One string, not a hash: a hash whose values exceed 64 bytes is
    stored as a hash table, ~300 B more per customer."""
    if len(token) != TOKEN_WIDTH:
        raise ValueError(f"a write token is {TOKEN_WIDTH} characters (got {len(token)})")
    s = stored.state
    names: dict[str, int] = {}
    buckets = []
    for bucket, counters in s.buckets.items():
        row: list[int] = [bucket]
        for key, count in counters.items():
            if count:
                row += (names.setdefault(key, len(names)), count)
        if len(row) > 1:
            buckets.append(row)
    sessions = [x for sid, t in s.sessions.items() for x in (sid, t.anchor_ms, t.pages, t.actions, t.ended, t.last_ms)]
    running = [None if r is None else [r.first, [x for name, count in r.counts.items()
                                                 for x in (names.setdefault(COUNT_PREFIX + name, len(names)), count)]]
               for r in s.running]
    alerts = {rule: [r.active, r.baseline, r.level] for rule, r in stored.alert_states.items()}
    snapshot = [stored.snapshot.tier.value, stored.snapshot.es] if stored.snapshot is not None else None
    record = [s.watermark_ms, s.last_active_ms, s.last_aer_ms, s.features, [x for m in s.membership for x in m],
              s.account, s.segment, alerts, snapshot, list(names), buckets, sessions, stored.due_ms, running,
              [x for name, entry in (s.traits or {}).items() for x in (name, *entry)],
              [x for import_id, entry in (s.imports or {}).items() for x in (import_id, *entry)]]
    standing = None if stored.standing is None else _standing_array(stored.standing)
    return token.encode() + msgpack.packb(standing) + msgpack.packb(record)


def _traits(flat: list[Any]) -> dict[str, tuple[int, str, Any]]:
    """The record's traits: `[name, ts, event id, value, ...]` (a value written before traits had none)."""
    return {flat[i]: (flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4)}


def _imports(flat: list[Any]) -> dict[str, tuple[int, int]]:
    """The record's imports: `[import id, last row, newest ts, ...]` (a value written before imports had none)."""
    return {flat[i]: (flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)}


def decode_customer(cid: str, value: bytes, seen: dict[str, int]) -> tuple[str, Stored]:
    """(write token, the customer) of its value, with the ids it has seen."""
    values = msgpack.Unpacker()
    values.feed(value[TOKEN_WIDTH:])
    standing = values.unpack()
    (watermark, last_active, last_aer, features, membership, account, segment, alerts, snapshot, names,
     rows, sessions, due, *rest) = values.unpack()
    names = [sys.intern(n) for n in names]   # a remembered customer (streams.state.cache) shares them
    buckets = {row[0]: {names[row[i]]: row[i + 1] for i in range(1, len(row), 2)} for row in rows}
    open_sessions = {sessions[i]: SessionStats(sessions[i + 1], sessions[i + 2], sessions[i + 3], sessions[i + 4],
                                               sessions[i + 5]) for i in range(0, len(sessions), 6)}
    state = CustomerState(
        customer_id=cid, watermark_ms=watermark, buckets=buckets, last_active_ms=last_active, last_aer_ms=last_aer,
        features=features, membership=[(membership[i], membership[i + 1]) for i in range(0, len(membership), 2)],
        sessions=open_sessions, account=tuple(account) if account else None,
        segment=tuple(segment) if segment else None, seen=seen,
        running=_running(rest[0], names) if rest else [None, None],
        traits=_traits(rest[1]) if len(rest) > 1 and rest[1] else None,
        imports=_imports(rest[2]) if len(rest) > 2 and rest[2] else None,
    )
    rules = {rule: RuleState(x[0], x[1], x[2]) for rule, x in alerts.items()}
    last = Snapshot(formulas.Tier(snapshot[0]), snapshot[1]) if snapshot is not None else None
    return value[:TOKEN_WIDTH].decode(), Stored(state, rules, last, _standing(cid, standing), due)


def _running(packed: list[Any], names: list[str]) -> list[RunningCounts | None]:
    """The record's running window counts: `[first bucket, [name position, count ...]]` per window."""
    return [None if r is None else RunningCounts(r[0], {sys.intern(names[r[1][i]][len(COUNT_PREFIX):]): r[1][i + 1]
                                                        for i in range(0, len(r[1]), 2)})
            for r in packed]


def decode_standing(cid: str, value: bytes) -> Standing | None:
    """The standing of a customer's value, its record left unread."""
    values = msgpack.Unpacker()
    values.feed(value[TOKEN_WIDTH:])
    return _standing(cid, values.unpack())


_SUM_INDEX = {name: i for i, name in enumerate(SUMS)}


def _standing_array(s: Standing) -> list[object]:
    """Its sums as (index in SUMS, value) pairs, zeros left out."""
    sums = [x for key, value in s.sums.items() for x in (_SUM_INDEX[key], value)]
    return [s.es, s.cer, s.tier.value, s.active, s.account_id, s.scored, s.member_since, list(s.alerts), sums,
            s.segment, *([[x for pair in s.traits for x in pair]] if s.traits else [])]


def _standing(cid: str, packed: list[Any] | None) -> Standing | None:
    if packed is None:
        return None
    es, cer, tier, active, account_id, scored, member_since, alerts, sums, segment, *rest = packed
    traits = tuple((rest[0][i], rest[0][i + 1]) for i in range(0, len(rest[0]), 2)) if rest else ()
    return Standing(cid, es, cer, formulas.Tier(tier), active, account_id, scored, member_since, tuple(alerts),
                    {SUMS[sums[i]]: sums[i + 1] for i in range(0, len(sums), 2)}, segment, traits)


_REMOVALS = ("ZREM", "SREM")


class Ops:
    """A shard's changes as one script call: generic Redis commands on declared keys. A bytes
    argument (a packed record, an output) travels as a script argument of its own, named in the
    command by its index: the commands themselves are JSON, which holds no raw bytes."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}
        self.checks: list[list[Any]] = []
        self.configs: list[list[Any]] = []
        self.ops: list[list[Any]] = []
        self.blobs: list[bytes] = []
        self._merged: dict[tuple[str, str], list[tuple[object, ...]]] = {}

    def key(self, name: str) -> int:
        if name not in self._index:
            self.keys.append(name)
            self._index[name] = len(self.keys)
        return self._index[name]

    def check(self, key: str, read_token: str, prefixed: bool = False) -> None:
        """Apply nothing unless `key`'s write token is still `read_token`: its hash field `v`, or
        (`prefixed`) the first TOKEN_WIDTH bytes of its string value."""
        self.checks.append([self.key(key), read_token, TOKEN_WIDTH if prefixed else 0])

    def require_config(self, key: str, fingerprint: str) -> None:
        """Apply nothing, and answer -1, when `key` names another scoring config than `fingerprint`
        (a newer worker adopted one: streams.worker.timers.ConfigAdoption); a missing key passes."""
        self.configs.append([self.key(key), fingerprint])

    def add(self, command: str, key: str, *args: object) -> None:
        self.ops.append([command, self.key(key), *(a if isinstance(a, str) else self._arg(a) for a in args)])

    def add_many(self, command: str, key: str, groups: Iterable[tuple[object, ...]], chunk: int = 1000) -> None:
        """A variadic command (HSET, ZADD, HDEL ...) over many argument groups, as several commands:
        the script unpacks a command's arguments, and Lua caps that at about 8,000."""
        groups = list(groups)
        for start in range(0, len(groups), chunk):
            self.add(command, key, *(x for group in groups[start:start + chunk] for x in group))

    def merge(self, command: str, key: str, *args: object) -> None:
        """A command on a shared key (a sorted set or set of many customers), merged with the write's
        other ones of the same name on that key into one variadic command: Redis's cost is mostly
        per command, not per member. Only for commands whose members are the write's own customers,
        each named once per key, so that their order cannot matter; removals run before additions."""
        self.key(key)        # declared now: the script's KEYS are complete before the payload is built
        self._merged.setdefault((command, key), []).append(args)

    def empty(self) -> bool:
        return not self.ops and not self._merged

    def payload(self) -> bytes:
        self._flush()
        return orjson.dumps({"config": self.configs, "check": self.checks, "ops": self.ops})

    def arguments(self) -> list[bytes]:
        """The script's arguments: the commands (ARGV[1]), then the bytes they name (ARGV[2] ...)."""
        return [self.payload(), *self.blobs]

    def _flush(self) -> None:
        merged = sorted(self._merged.items(), key=lambda item: item[0][0] not in _REMOVALS)
        self._merged = {}
        for (command, key), groups in merged:
            self.add_many(command, key, groups)

    def _arg(self, value: object) -> str | int:
        if isinstance(value, bytes):
            self.blobs.append(value)
            return len(self.blobs) + 1
        if isinstance(value, float):
            return repr(value)
        return str(value)


@dataclass
class ShardTotals:
    """A shard's aggregate increments summed over a write's customers, written once each: the
    whole population's, and each tracked segment's (scoring.segment_kpis)."""

    buckets: dict[int, dict[str, int]]
    sums: dict[str, int]
    accounts: set[str]        # to evaluate at the next sweep (account alerts)
    segments: dict[str, tuple[dict[int, dict[str, int]], dict[str, int]]]    # segment -> (buckets, sums)

    @classmethod
    def empty(cls) -> ShardTotals:
        return cls({}, {}, set(), {})

    def add(self, delta: CustomerDelta, shares: Iterable[SegmentShare] = ()) -> None:
        add_delta(self.buckets, self.sums, delta.counters, delta.sums)
        self.accounts |= accounts_to_evaluate(delta.old, delta.new)
        for share in shares:
            buckets, sums = self.segments.setdefault(share.segment, ({}, {}))
            add_delta(buckets, sums, share.counters, share.sums)

    def write(self, ops: Ops, keys: Keys, shard: int) -> None:
        _write_counts(ops, keys, shard, None, self.buckets, self.sums)
        for segment, (buckets, sums) in self.segments.items():
            _write_counts(ops, keys, shard, segment, buckets, sums)
        if self.accounts:
            ops.add_many("SADD", keys.shared(shard, "acct.touched"), ((a,) for a in sorted(self.accounts)))   # the sweep evaluates them


def _write_counts(ops: Ops, keys: Keys, shard: int, segment: str | None, buckets: Mapping[int, Mapping[str, int]],
                  sums: Mapping[str, int]) -> None:
    """Per-bucket totals and standing sums, of everyone or of one segment."""
    for bucket, counters in buckets.items():
        totals = keys.totals(shard, bucket, segment)
        for key, amount in counters.items():
            if amount:
                ops.add("HINCRBY", totals, key, amount)
    if buckets:
        ops.add_many("ZADD", keys.of_segment(shard, "buckets", segment), ((b, str(b)) for b in buckets))
    for key, amount in sums.items():
        if amount:
            ops.add("HINCRBY", keys.of_segment(shard, "sums", segment), key, amount)


def write_delta(ops: Ops, keys: Keys, shard: int, delta: CustomerDelta, read_token: str, token: str,
                shares: Iterable[SegmentShare] = ()) -> None:
    """The Redis commands that take one customer from its old to its new stored form (the shard's
    aggregates are summed over the write's customers by ShardTotals): only if its write token is
    still `read_token` (what was read), and stamped with this write's `token` (streams.state.cache).
    The customer's value (token, standing, record) is one SET."""
    cid = delta.customer_id
    ops.check(keys.facts(cid), read_token, prefixed=True)
    if delta.after is not None:
        ops.add("SET", keys.facts(cid), encode_customer(token, delta.after))
    if delta.seen:
        ops.add_many("ZADD", keys.seen(cid), ((ts, event_id) for event_id, ts in delta.seen.items()))
    if delta.seen_floor is not None:
        ops.add("ZREMRANGEBYSCORE", keys.seen(cid), "-inf", f"({delta.seen_floor}")
    if delta.facts is not None:
        f, was = delta.facts, delta.facts_before
        if f.last_active_ms is not None and f.last_active_ms != (was.last_active_ms if was else None):
            ops.merge("ZADD", keys.shared(shard, "active"), f.last_active_ms, cid)
        if f.last_aer_ms is not None and f.last_aer_ms != (was.last_aer_ms if was else None):
            ops.merge("ZADD", keys.shared(shard, "aer"), f.last_aer_ms, cid)
        for feature, ts in f.features.items():
            if was is None or was.features.get(feature) != ts:
                ops.merge("ZADD", keys.feature(shard, feature), ts, cid)
    for share in shares:
        _write_segment_activity(ops, keys, shard, cid, share)
    for rule in delta.ended_conditions:          # the condition ended: its alerts are resolved, its work done
        ops.add("HSET", keys.alert_resolved(cid), rule, delta.at_ms)
        ops.add("HDEL", keys.alert_work(cid), rule)
    _write_standing(ops, keys, shard, delta.old, delta.new)
    if delta.due_changed:
        due = keys.shared(shard, "due")
        if delta.due_ms is None:
            ops.merge("ZREM", due, cid)
        else:
            ops.merge("ZADD", due, delta.due_ms, cid)


def _write_segment_activity(ops: Ops, keys: Keys, shard: int, cid: str, share: SegmentShare) -> None:
    """The customer's last activity and feature use in its segment's sorted sets: recorded, or taken out as it leaves."""
    segment = share.segment
    if share.leaves is not None:
        ops.merge("ZREM", keys.of_segment(shard, "active", segment), cid)
        for feature in share.leaves:
            ops.merge("ZREM", keys.feature(shard, feature, segment), cid)
        return
    if share.last_active_ms is not None:
        ops.merge("ZADD", keys.of_segment(shard, "active", segment), share.last_active_ms, cid)
    for feature, ts in share.features.items():
        ops.merge("ZADD", keys.feature(shard, feature, segment), ts, cid)


def _write_standing(ops: Ops, keys: Keys, shard: int, old: Standing | None, new: Standing | None) -> None:
    """Only what moved: a standing changes often (its sums), its rank, risk and membership rarely."""
    if new is None or old == new:
        return
    cid = new.customer_id
    rank = keys.shared(shard, "rank")
    if old is None or bottom_key(old) != bottom_key(new):
        if old is not None:
            ops.merge("ZREM", rank, bottom_key(old))
        ops.merge("ZADD", rank, 0, bottom_key(new))
    old_segment = old.segment if old else None
    if old_segment != new.segment or (old is not None and bottom_key(old) != bottom_key(new)):
        if old is not None and old_segment is not None:
            ops.merge("ZREM", keys.segment_rank(shard, old_segment), bottom_key(old))
        if new.segment is not None:
            ops.merge("ZADD", keys.segment_rank(shard, new.segment), 0, bottom_key(new))
    risk = keys.shared(shard, "risk")
    was, now = (old is not None and old.at_risk) and risk_key(old), new.at_risk and risk_key(new)
    if was != now:
        if was:
            ops.merge("ZREM", risk, was)
        if now:
            ops.merge("ZADD", risk, 0, now)
    if (old.member_since if old else None) != new.member_since:
        if new.member_since is not None:
            ops.merge("ZADD", keys.shared(shard, "members"), new.member_since, cid)
        else:
            ops.merge("ZREM", keys.shared(shard, "members"), cid)
    old_account = old.account_id if old else None
    if old_account != new.account_id:
        if old_account:
            ops.merge("SREM", keys.account(shard, old_account), cid)
        if new.account_id:
            ops.merge("SADD", keys.account(shard, new.account_id), cid)
