"""An in-memory stand-in for the async Redis client, for fast tests of the worker's logic.

It speaks the part of redis-py's asyncio API that the batch path uses (loading customers,
the apply script, the due index, the outbox scripts, pipelines), so `RedisStore` itself, with
its real key layout and encoding (`streams.state.layout`), runs against it: what it leaves out is
the network, Lua and Redis. Tests that claim to test the service use a real Redis; a test
parametrised over both runs the same assertions on each. Reads that need more of Redis
(leaderboards, KPI sums, the median) are not here and raise.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import orjson

from streams.state.store import APPLY, OUTBOX_CLAIM, OUTBOX_ACK, RANK_PROBE, READ_MANY, SUM_HASHES


def _b(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        return repr(value).encode()
    return str(value).encode()


def _bound(text: Any, low: bool) -> tuple[float, bool]:
    """A ZRANGEBYSCORE bound: (value, exclusive)."""
    text = text.decode() if isinstance(text, bytes) else str(text)
    if text in ("-inf", "+inf", "inf"):
        return (float("-inf") if text == "-inf" else float("inf")), False
    if text.startswith("("):
        return float(text[1:]), True
    return float(text), False


class MemoryRedis:
    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}       # hash: dict, zset: dict member -> score, set: set, list: list
        self.scripts = {APPLY: self._apply, OUTBOX_ACK: self._settle, OUTBOX_CLAIM: self._claim,
                        SUM_HASHES: self._sum_hashes, RANK_PROBE: self._rank_probe, READ_MANY: self._read_many}

    # --- client plumbing ------------------------------------------------------------------

    def register_script(self, text: str):  # type: ignore[no-untyped-def]
        run = self.scripts.get(text)

        async def call(keys=(), args=()):  # type: ignore[no-untyped-def]
            if run is None:
                raise NotImplementedError("this script needs a real Redis")
            return run([_b(k) for k in keys], list(args))
        return call

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self)

    async def aclose(self) -> None:
        return None

    close = aclose

    async def ping(self) -> bool:
        return True

    async def info(self, section: str = "") -> dict[str, Any]:
        return {"maxmemory_policy": "noeviction"}

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        command = None if name.startswith("_") else getattr(self, f"_{name}", None)
        if command is None:
            raise AttributeError(name)

        async def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            return command(*args, **kwargs)
        return call

    def _get(self, key: Any, kind: type) -> Any:
        return self.data.setdefault(_b(key), kind())

    def _tidy(self, key: Any) -> None:
        if not self.data.get(_b(key)):
            self.data.pop(_b(key), None)

    # --- commands ---------------------------------------------------------------------------

    def _exists(self, *keys: Any) -> int:
        return sum(1 for k in keys if _b(k) in self.data)

    def _delete(self, *keys: Any) -> int:
        return sum(1 for k in keys if self.data.pop(_b(k), None) is not None)

    _unlink = _delete

    def _scan_iter(self, match: str = "*", count: int = 0):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _hget(self, key: Any, field: Any) -> bytes | None:
        return self.data.get(_b(key), {}).get(_b(field))

    def _hgetall(self, key: Any) -> dict[bytes, bytes]:
        return dict(self.data.get(_b(key), {}))

    def _hlen(self, key: Any) -> int:
        return len(self.data.get(_b(key), {}))

    def _hset(self, key: Any, *pairs: Any, mapping: dict | None = None) -> int:
        h = self._get(key, dict)
        items = list(zip(pairs[0::2], pairs[1::2])) + list((mapping or {}).items())
        added = sum(1 for f, _ in items if _b(f) not in h)
        for field, value in items:
            h[_b(field)] = _b(value)
        return added

    def _hincrby(self, key: Any, field: Any, amount: Any) -> int:
        h = self._get(key, dict)
        total = int(h.get(_b(field), b"0")) + int(amount)
        h[_b(field)] = _b(total)
        return total

    def _hdel(self, key: Any, *fields: Any) -> int:
        h = self.data.get(_b(key), {})
        gone = sum(1 for f in fields if h.pop(_b(f), None) is not None)
        self._tidy(key)
        return gone

    def _zadd(self, key: Any, *pairs: Any, mapping: dict | None = None, lt: bool = False) -> int:
        if len(pairs) == 1 and isinstance(pairs[0], dict):   # redis-py: zadd(name, mapping, ...)
            pairs, mapping = (), pairs[0]
        z = self._get(key, dict)
        items = [(m, s) for s, m in zip(pairs[0::2], pairs[1::2])] + list((mapping or {}).items())
        added = 0
        for member, score in items:
            member, score = _b(member), float(score)
            if member not in z:
                added += 1
            elif lt and score >= z[member]:
                continue
            z[member] = score
        return added

    def _zrem(self, key: Any, *members: Any) -> int:
        z = self.data.get(_b(key), {})
        gone = sum(1 for m in members if z.pop(_b(m), None) is not None)
        self._tidy(key)
        return gone

    def _in_range(self, key: Any, low: Any, high: Any) -> list[tuple[bytes, float]]:
        (lo, lo_ex), (hi, hi_ex) = _bound(low, True), _bound(high, False)
        z = self.data.get(_b(key), {})
        return sorted(((m, s) for m, s in z.items() if (s > lo if lo_ex else s >= lo) and (s < hi if hi_ex else s <= hi)),
                      key=lambda item: (item[1], item[0]))

    def _zrangebyscore(self, key: Any, low: Any, high: Any, start: int | None = None, num: int | None = None) -> list:
        members = [m for m, _ in self._in_range(key, low, high)]
        if start is not None and num is not None:
            members = members[start:start + num]
        return members

    def _zremrangebyscore(self, key: Any, low: Any, high: Any) -> int:
        gone = [m for m, _ in self._in_range(key, low, high)]
        return self._zrem(key, *gone) if gone else 0

    def _zrangebylex(self, key: Any, low: Any, high: Any) -> list:
        def inside(member: bytes, bound: bytes, above: bool) -> bool:
            if bound in (b"-", b"+"):
                return (bound == b"-") == above
            if bound[:1] == b"[":
                return member >= bound[1:] if above else member <= bound[1:]
            return member > bound[1:] if above else member < bound[1:]
        return sorted(m for m in self.data.get(_b(key), {}) if inside(m, _b(low), True) and inside(m, _b(high), False))

    def _zcount(self, key: Any, low: Any, high: Any) -> int:
        return len(self._in_range(key, low, high))

    def _zcard(self, key: Any) -> int:
        return len(self.data.get(_b(key), {}))

    def _zrange(self, key: Any, start: int, stop: int, withscores: bool = False) -> list:
        ordered = sorted(self.data.get(_b(key), {}).items(), key=lambda item: (item[1], item[0]))
        chosen = ordered[start:None if stop == -1 else stop + 1]
        return chosen if withscores else [m for m, _ in chosen]

    def _zmscore(self, key: Any, members: list) -> list[float | None]:
        z = self.data.get(_b(key), {})
        return [z.get(_b(m)) for m in members]

    def _sadd(self, key: Any, *members: Any) -> int:
        s = self._get(key, set)
        added = len({_b(m) for m in members} - s)
        s.update(_b(m) for m in members)
        return added

    def _srem(self, key: Any, *members: Any) -> int:
        s = self.data.get(_b(key), set())
        gone = len(s & {_b(m) for m in members})
        s.difference_update(_b(m) for m in members)
        self._tidy(key)
        return gone

    def _smembers(self, key: Any) -> set[bytes]:
        return set(self.data.get(_b(key), set()))

    def _spop(self, key: Any, count: int | None = None) -> list[bytes]:
        s = self.data.get(_b(key), set())
        taken = sorted(s)[: 1 if count is None else count]      # Redis picks at random; any pick is one
        s.difference_update(taken)
        self._tidy(key)
        return taken

    def _lpush(self, key: Any, *values: Any) -> int:
        items = self._get(key, list)
        for value in values:
            items.insert(0, _b(value))
        return len(items)

    def _ltrim(self, key: Any, start: int, stop: int) -> bool:
        items = self.data.get(_b(key), [])
        items[:] = items[start:stop + 1]
        return True

    def _lrange(self, key: Any, start: int, stop: int) -> list[bytes]:
        return list(self.data.get(_b(key), [])[start:stop + 1])

    def _keys(self, pattern: str) -> list[bytes]:
        return sorted(k for k in self.data if fnmatch.fnmatchcase(k.decode(), pattern))

    # --- the scripts (streams/lua), in Python ------------------------------------------------

    def _apply(self, keys: list[bytes], args: list) -> int:
        doc = orjson.loads(args[0])
        for index, version in doc["check"]:
            if (self._hget(keys[index - 1], "v") or b"0").decode() != version:
                return 0
        for command, index, *rest in doc["ops"]:
            getattr(self, f"_{command.lower()}")(keys[index - 1], *rest)
        return 1

    def _sum_hashes(self, keys: list[bytes], args: list) -> list[bytes | int]:
        totals: dict[bytes, int] = {}
        for key in keys:
            for field, value in self.data.get(key, {}).items():
                totals[field] = totals.get(field, 0) + int(value)
        return [item for field, total in totals.items() for item in (field, total)]

    def _read_many(self, keys: list[bytes], args: list) -> list:
        if _b(args[0]) == b"HGET":
            return [self.data.get(key, {}).get(_b(args[1])) for key in keys]
        return [list(self.data.get(key, set())) for key in keys]

    def _rank_probe(self, keys: list[bytes], args: list) -> list[bytes | int]:
        lo, hi, bounds = _b(args[0]), _b(args[1]), [_b(bound) for bound in args[2:]]
        members = [m for key in keys for m in self.data.get(key, {})]   # lex sets: every score 0
        in_range = [m for m in members if lo <= m < hi]
        counts = [sum(m < bound for m in members) for bound in bounds]
        return [min(in_range, default=b""), max(in_range, default=b""), *counts]

    def _settle(self, keys: list[bytes], args: list) -> int:
        deleted = 0
        for i in range(0, len(args), 3):
            index, field, output_id = int(args[i]), args[i + 1], args[i + 2]
            entry = self._hget(keys[index - 1], field)
            if entry is not None and entry.startswith(b'["' + _b(output_id)):
                self._hdel(keys[index - 1], field)
                self._zrem(keys[index], field)
                deleted += 1
        return deleted

    def _claim(self, keys: list[bytes], args: list) -> list[bytes]:
        now, lease, limit = args
        claimed: list[bytes] = []
        for field in self._zrangebyscore(keys[1], "-inf", now, start=0, num=int(limit)):
            entry = self._hget(keys[0], field)
            if entry is None:
                self._zrem(keys[1], field)
            else:
                self._zadd(keys[1], lease, field)
                claimed += [field, entry]
        return claimed


class _Pipeline:
    """Queues commands and runs them in order on execute (no isolation is needed in one process)."""

    def __init__(self, redis: MemoryRedis) -> None:
        self.redis = redis
        self.calls: list[tuple[str, tuple, dict]] = []

    async def __aenter__(self) -> _Pipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.calls.clear()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def queue(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls.append((name, args, kwargs))
            return self
        return queue

    async def execute(self) -> list[Any]:
        calls, self.calls = self.calls, []
        return [getattr(self.redis, f"_{name}")(*args, **kwargs) for name, args, kwargs in calls]
