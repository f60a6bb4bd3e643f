"""An in-memory stand-in for the async Redis client, for fast tests of the worker's logic.

It speaks the part of redis-py's asyncio API that `RedisStore` uses (loading customers, the due
index, pipelines, the scripts), so the store itself, with its real key layout and encoding
(`streams.state.layout`), runs against it. The scripts are the product's own: the text
`register_script` is given (streams/state/lua/*.lua) runs in a Lua 5.1 interpreter (`lupa`, the
Lua version Redis embeds), with what Redis gives a script: `KEYS`, `ARGV`, `redis.call` and
`redis.pcall` on the commands below, `redis.error_reply` and `status_reply`, `cjson`, the shebang's
`no-writes` flag, and Redis's conversions of replies and return values. What it leaves out is the
network and Redis itself (WRONGTYPE errors, expiry, the cluster); a command or a global that a
script uses and this stand-in lacks fails loudly. Tests that claim to test the service use a
real Redis; a test parametrised over both runs the same assertions on each. Reads that need
more than is here (the leaderboards' `zrange(..., desc=True)`) raise.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import lupa.lua51 as lua51
import orjson
from redis.exceptions import ResponseError


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


def _page(members: list, start: int | None, num: int | None) -> list:
    """LIMIT offset count: a negative count is every member from offset on, a negative offset none."""
    if start is None or num is None:
        return members
    start, num = int(start), int(num)
    if start < 0:
        return []
    return members[start:] if num < 0 else members[start:start + num]


class CommandError(Exception):
    """An error reply of a command (its text as Redis words it, e.g. 'ERR syntax error')."""


class MemoryRedis:
    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}       # hash: dict, zset: dict member -> score, set: set, list: list
        self._lua: _Lua | None = None

    # --- client plumbing ------------------------------------------------------------------

    def register_script(self, text: str | bytes):  # type: ignore[no-untyped-def]
        """As redis-py's: an awaitable call(keys=..., args=...) that runs the script (EVALSHA)."""
        body = _b(text)

        async def call(keys=(), args=()):  # type: ignore[no-untyped-def]
            if self._lua is None:
                self._lua = _Lua(self)
            return self._lua.run(body, [_b(k) for k in keys], [_b(a) for a in args])
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

    def _of(self, key: Any, kind: type) -> Any:
        return self.data.setdefault(_b(key), kind())

    def _tidy(self, key: Any) -> None:
        if not self.data.get(_b(key)):
            self.data.pop(_b(key), None)

    # --- commands (redis-py's signatures; a script's redis.call reaches them through COMMANDS) --

    def _exists(self, *keys: Any) -> int:
        return sum(1 for k in keys if _b(k) in self.data)

    def _delete(self, *keys: Any) -> int:
        return sum(1 for k in keys if self.data.pop(_b(k), None) is not None)

    _unlink = _delete

    def _scan_iter(self, match: str = "*", count: int = 0):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _get(self, key: Any) -> bytes | None:
        value = self.data.get(_b(key))
        if value is not None and not isinstance(value, bytes):
            raise CommandError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return value

    def _set(self, key: Any, value: Any) -> bool:
        self.data[_b(key)] = _b(value)
        return True

    def _getrange(self, key: Any, start: Any, end: Any) -> bytes:
        value = self._get(key) or b""
        start, end = int(start), int(end)
        return value[start:end + 1] if end >= 0 else value[start:len(value) + end + 1]

    def _hget(self, key: Any, field: Any) -> bytes | None:
        return self.data.get(_b(key), {}).get(_b(field))

    def _hgetall(self, key: Any) -> dict[bytes, bytes]:
        return dict(self.data.get(_b(key), {}))

    def _hlen(self, key: Any) -> int:
        return len(self.data.get(_b(key), {}))

    def _hset(self, key: Any, *pairs: Any, mapping: dict | None = None) -> int:
        h = self._of(key, dict)
        items = list(zip(pairs[0::2], pairs[1::2])) + list((mapping or {}).items())
        added = sum(1 for f, _ in items if _b(f) not in h)
        for field, value in items:
            h[_b(field)] = _b(value)
        return added

    def _hincrby(self, key: Any, field: Any, amount: Any) -> int:
        h = self._of(key, dict)
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
        z = self._of(key, dict)
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
        return _page([m for m, _ in self._in_range(key, low, high)], start, num)

    def _zremrangebyscore(self, key: Any, low: Any, high: Any) -> int:
        gone = [m for m, _ in self._in_range(key, low, high)]
        return self._zrem(key, *gone) if gone else 0

    def _in_lex_range(self, key: Any, low: Any, high: Any) -> list[bytes]:
        """The members between two ZRANGEBYLEX bounds ('-', '+', '[x', '(x'), ascending (the sets
        read by lex hold one score)."""
        def inside(member: bytes, bound: bytes, above: bool) -> bool:
            if bound in (b"-", b"+"):
                return (bound == b"-") == above
            if bound[:1] == b"[":
                return member >= bound[1:] if above else member <= bound[1:]
            if bound[:1] == b"(":
                return member > bound[1:] if above else member < bound[1:]
            raise CommandError("ERR min or max not valid string range item")
        low, high = _b(low), _b(high)
        inside(b"", low, True), inside(b"", high, False)        # a bad bound fails on an empty set too
        return sorted(m for m in self.data.get(_b(key), {}) if inside(m, low, True) and inside(m, high, False))

    def _zrangebylex(self, key: Any, low: Any, high: Any, start: int | None = None, num: int | None = None) -> list:
        return _page(self._in_lex_range(key, low, high), start, num)

    def _zrevrangebylex(self, key: Any, high: Any, low: Any, start: int | None = None, num: int | None = None) -> list:
        return _page(self._in_lex_range(key, low, high)[::-1], start, num)

    def _zlexcount(self, key: Any, low: Any, high: Any) -> int:
        return len(self._in_lex_range(key, low, high))

    def _zcount(self, key: Any, low: Any, high: Any) -> int:
        return len(self._in_range(key, low, high))

    def _zcard(self, key: Any) -> int:
        return len(self.data.get(_b(key), {}))

    def _zrange(self, key: Any, start: int, stop: int, withscores: bool = False) -> list:
        ordered = sorted(self.data.get(_b(key), {}).items(), key=lambda item: (item[1], item[0]))
        chosen = ordered[start:None if stop == -1 else stop + 1]
        return chosen if withscores else [m for m, _ in chosen]

    def _zrevrange(self, key: Any, start: int, stop: int, withscores: bool = False) -> list:
        ordered = sorted(self.data.get(_b(key), {}).items(), key=lambda item: (item[1], item[0]), reverse=True)
        chosen = ordered[start:None if stop == -1 else stop + 1]
        return chosen if withscores else [m for m, _ in chosen]

    def _zmscore(self, key: Any, members: list) -> list[float | None]:
        z = self.data.get(_b(key), {})
        return [z.get(_b(m)) for m in members]

    def _sadd(self, key: Any, *members: Any) -> int:
        s = self._of(key, set)
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
        items = self._of(key, list)
        for value in values:
            items.insert(0, _b(value))
        return len(items)

    def _rpush(self, key: Any, *values: Any) -> int:
        items = self._of(key, list)
        items.extend(_b(value) for value in values)
        return len(items)

    def _ltrim(self, key: Any, start: int, stop: int) -> bool:
        items = self.data.get(_b(key), [])
        items[:] = items[_span(items, int(start), int(stop))]
        return True

    def _lrange(self, key: Any, start: int, stop: int) -> list[bytes]:
        items = self.data.get(_b(key), [])
        return list(items[_span(items, int(start), int(stop))])

    def _keys(self, pattern: str) -> list[bytes]:
        return sorted(k for k in self.data if fnmatch.fnmatchcase(k.decode(), pattern))


# --- the commands a script can call, in Redis's argument form (every argument bytes) -----------------

def _pairs(name: str, args: tuple[bytes, ...]) -> tuple[bytes, ...]:
    if len(args) % 2:
        raise CommandError(f"ERR wrong number of arguments for '{name}' command")
    return args


def _limit(options: tuple[bytes, ...]) -> tuple[int | None, int | None]:
    """The LIMIT offset count option of ZRANGEBYSCORE and the lex ranges (WITHSCORES is not here)."""
    if not options:
        return None, None
    if len(options) != 3 or options[0].upper() != b"LIMIT":
        raise CommandError("ERR syntax error")
    try:
        return int(options[1]), int(options[2])
    except ValueError:
        raise CommandError("ERR value is not an integer or out of range") from None


def _number(text: bytes, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and math.isnan(value)):
        raise CommandError("ERR value is not an integer or out of range" if kind is int
                           else "ERR value is not a valid float")
    return value


def _scored(pairs: tuple[bytes, ...]) -> tuple[Any, ...]:
    """ZADD's score member ... (no NX, XX, GT, LT, CH or INCR: no script uses them)."""
    return tuple(_number(x, float) if i % 2 == 0 else x for i, x in enumerate(_pairs("zadd", pairs)))


# name -> (arity as Redis counts it: exact, or at least -arity; writes?; run(redis, *args) -> reply)
COMMANDS: dict[bytes, tuple[int, bool, Callable[..., Any]]] = {
    b"HGET": (3, False, lambda r, key, field: r._hget(key, field)),
    b"GET": (2, False, lambda r, key: r._get(key)),
    b"SET": (3, True, lambda r, key, value: r._set(key, value)),
    b"GETRANGE": (4, False, lambda r, key, start, end: r._getrange(key, start, end)),
    b"HMGET": (-3, False, lambda r, key, *fields: [r._hget(key, f) for f in fields]),
    b"HGETALL": (2, False, lambda r, key: [x for pair in r._hgetall(key).items() for x in pair]),
    b"HSET": (-4, True, lambda r, key, *pairs: r._hset(key, *_pairs("hset", pairs))),
    b"HINCRBY": (4, True, lambda r, key, field, amount: r._hincrby(key, field, _number(amount, int))),
    b"HDEL": (-3, True, lambda r, key, *fields: r._hdel(key, *fields)),
    b"ZADD": (-4, True, lambda r, key, *pairs: r._zadd(key, *_scored(pairs))),
    b"ZREM": (-3, True, lambda r, key, *members: r._zrem(key, *members)),
    b"ZRANGEBYSCORE": (-4, False, lambda r, key, low, high, *options:
                       r._zrangebyscore(key, low, high, *_limit(options))),
    b"ZREMRANGEBYSCORE": (4, True, lambda r, key, low, high: r._zremrangebyscore(key, low, high)),
    b"ZRANGEBYLEX": (-4, False, lambda r, key, low, high, *options:
                     r._zrangebylex(key, low, high, *_limit(options))),
    b"ZREVRANGEBYLEX": (-4, False, lambda r, key, high, low, *options:
                        r._zrevrangebylex(key, high, low, *_limit(options))),
    b"ZLEXCOUNT": (4, False, lambda r, key, low, high: r._zlexcount(key, low, high)),
    b"SADD": (-3, True, lambda r, key, *members: r._sadd(key, *members)),
    b"SREM": (-3, True, lambda r, key, *members: r._srem(key, *members)),
    b"SMEMBERS": (2, False, lambda r, key: sorted(r._smembers(key))),
}

# A script's flags after `#!lua flags=` (Redis 7); only no-writes changes what runs here.
SCRIPT_FLAGS = {b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster", b"allow-cross-slot-keys"}

_SANDBOX = """
local dispatch, decode, encode, null = ...
local error, type, select, format, unpack = error, type, select, string.format, unpack
local setfenv, setmetatable, pcall, rawget = setfenv, setmetatable, pcall, rawget

-- redis.pcall: the command's reply, or its error as a table {err=...}. Arguments go to Redis as
-- strings, a number written with %.17g as Redis writes it; any other type is refused.
local function pcall_(...)
  local n = select('#', ...)
  if n == 0 then return {err = 'ERR Please specify at least one argument for this redis lib call'} end
  for i = 1, n do
    local kind = type((select(i, ...)))
    if kind ~= 'string' then
      if kind ~= 'number' then return {err = 'ERR Lua redis lib command arguments must be strings or integers'} end
      local args = {...}
      for j = i, n do
        if type(args[j]) == 'number' then args[j] = format('%.17g', args[j])
        elseif type(args[j]) ~= 'string' then
          return {err = 'ERR Lua redis lib command arguments must be strings or integers'}
        end
      end
      return dispatch(unpack(args, 1, n))
    end
  end
  return dispatch(...)
end
-- redis.call: an error reply is raised (as Redis 7 does, the table {err=...} itself)
local function call(...)
  local reply = pcall_(...)
  if type(reply) == 'table' and rawget(reply, 'err') ~= nil then error(reply) end
  return reply
end
local function error_reply(msg)
  if type(msg) ~= 'string' then error('wrong number or type of arguments') end
  if msg:sub(1, 1) == '-' then msg = msg:sub(2) end
  if not msg:find(' ', 1, true) then msg = 'ERR ' .. msg end
  return {err = msg}
end
local function status_reply(msg)
  if type(msg) ~= 'string' then error('wrong number or type of arguments') end
  return {ok = msg}
end

local base = {
  redis = {call = call, pcall = pcall_, error_reply = error_reply, status_reply = status_reply,
           LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3, log = function() end},
  cjson = {decode = decode, encode = encode, null = null},
  string = string, table = table, math = math, _VERSION = _VERSION,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  rawequal = rawequal, rawget = rawget, rawset = rawset, select = select, type = type,
  setmetatable = setmetatable, getmetatable = getmetatable, tonumber = tonumber, tostring = tostring,
  unpack = unpack, xpcall = xpcall,
}
setmetatable(base, {__index = function(_, name)
  error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
end})
local globals = {__index = base, __newindex = function(_, name)
  error("Attempt to modify a readonly table: global '" .. tostring(name) .. "'", 2)
end}

-- a compiled script run with its own KEYS and ARGV: true and its (first) return value, or false
-- and the error
local function run(script, nkeys, ...)
  local keys, argv = {...}, {select(nkeys + 1, ...)}
  for i = #keys, nkeys + 1, -1 do keys[i] = nil end
  setfenv(script, setmetatable({KEYS = keys, ARGV = argv}, globals))
  local ok, result = pcall(script)
  return ok, result
end

-- a table's items 1, 2, ... up to the first nil (Redis's array reply), from `first` on: how many
-- there are from there, then at most 4,000 of them (a C function returns up to ~8,000 values)
local function items(t, first)
  local last = first - 1
  while t[last + 1] ~= nil do last = last + 1 end
  return last - first + 1, unpack(t, first, last < first + 3999 and last or first + 3999)
end

return run, items, function(v) return rawequal(v, null) end
"""


class _Lua:
    """One Lua 5.1 interpreter per MemoryRedis, running scripts as Redis does."""

    def __init__(self, redis: MemoryRedis) -> None:
        self.redis = redis
        self.runtime = lua51.LuaRuntime(encoding=None, register_eval=False, register_builtins=False,
                                        unpack_returned_tuples=True)
        self.null = self.runtime.eval("newproxy()")       # cjson.null
        self.compiled: dict[bytes, tuple[Any, frozenset[bytes], str]] = {}   # body -> function, flags, SHA1
        self.read_only = False                              # the running script has no-writes
        self.invoke, self.items, self.is_null = self.runtime.execute(
            _SANDBOX, self._dispatch, self._decode, self._encode, self.null)
        self.load = self.runtime.eval("function(code) local f, problem = loadstring(code, '@user_script') "
                                      "return f, problem end")

    def run(self, body: bytes, keys: list[bytes], argv: list[bytes]) -> Any:
        script, flags, sha = self.compiled.get(body) or self._compile(body)
        self.read_only = b"no-writes" in flags
        ok, result = self.invoke(script, len(keys), *keys, *argv)
        if not ok:
            raise ResponseError(f"{self._error_text(result)} script: {sha}")
        return self._reply(result, top=True)

    def _compile(self, body: bytes) -> tuple[Any, frozenset[bytes], str]:
        """As Redis 7: a `#!lua flags=...` first line is read and left out (its newline kept, so line
        numbers hold); the rest is the body of a function, compiled as chunk "@user_script"."""
        sha = hashlib.sha1(body).hexdigest()
        flags: frozenset[bytes] = frozenset()
        code = body
        if body.startswith(b"#!"):
            end = body.find(b"\n")
            end = len(body) if end < 0 else end
            parts = body[:end].split(b" ")
            if parts[0] != b"#!lua":
                raise ResponseError(f"Unexpected engine in script shebang: {parts[0].decode()}")
            for part in filter(None, parts[1:]):
                if not part.startswith(b"flags="):
                    raise ResponseError(f"Unknown lua shebang option: {part.decode()}")
                flags = frozenset(filter(None, part[6:].split(b",")))
                for flag in sorted(flags - SCRIPT_FLAGS):
                    raise ResponseError(f"Unexpected flag in script shebang: {flag.decode()}")
            code = body[end:]
        loaded, problem = self.load(b"return function() " + code + b"\nend")
        if loaded is None:
            raise ResponseError(f"Error compiling script (new function): {problem.decode()} script: {sha}")
        self.compiled[body] = (loaded(), flags, sha)
        return self.compiled[body]

    # --- redis.call ------------------------------------------------------------------------

    def _dispatch(self, name: bytes, *args: bytes) -> Any:
        """redis.pcall's work, on arguments already strings: the reply as a Lua value, or the error
        as a table {err=...}."""
        try:
            command = COMMANDS.get(name) or COMMANDS.get(name.upper())
            if command is None:
                raise CommandError("ERR Unknown Redis command called from script")
            arity, writes, run = command
            if len(args) + 1 != arity if arity > 0 else len(args) + 1 < -arity:
                raise CommandError("ERR Wrong number of args calling Redis command from script")
            if writes and self.read_only:
                raise CommandError("ERR Write commands are not allowed from read-only scripts.")
            reply = run(self.redis, *args)
        except CommandError as error:
            return self.runtime.table_from({b"err": str(error).encode()})
        except ValueError as error:                          # an argument that does not parse
            return self.runtime.table_from({b"err": f"ERR {error}".encode()})
        kind = type(reply)
        return reply if kind is bytes or kind is int else self._to_lua(reply)

    def _to_lua(self, reply: Any) -> Any:
        """A command's reply as Redis hands it to Lua (RESP2): integer -> number, bulk -> string,
        nil -> false, array -> table; True (OK) -> {ok='OK'}; a double -> its string."""
        if reply is None:
            return False
        if reply is True:
            return self.runtime.table_from({b"ok": b"OK"})
        if isinstance(reply, float):
            return b"%.17g" % reply
        if isinstance(reply, list):
            return self.runtime.table_from([item if type(item) is bytes else self._to_lua(item)
                                            for item in reply])
        return reply

    # --- what the script returns -------------------------------------------------------------

    def _reply(self, value: Any, top: bool = False) -> Any:
        """A Lua value as Redis replies it and redis-py reads it: number -> integer (truncated toward
        0), string -> bytes, true -> 1, false/nil -> None, {err=...} -> an error (raised at the top,
        in an array as redis-py gives it), {ok=...} -> the status, another table -> the array of its
        items 1, 2, ... up to the first nil."""
        if isinstance(value, bool):
            return 1 if value else None
        if isinstance(value, float):
            return int(value)
        if lua51.lua_type(value) == "table":
            err, ok = value[b"err"], value[b"ok"]
            if isinstance(err, bytes):
                if top:
                    raise ResponseError(err.decode(errors="replace"))
                return ResponseError(err.decode(errors="replace"))
            if isinstance(ok, bytes):
                return ok
            items: list[Any] = []
            while True:
                found = self.items(value, len(items) + 1)      # a count alone when there are none
                count, *more = found if type(found) is tuple else (found,)
                items += more
                if len(more) == count:
                    break
            return [item if type(item) is bytes else self._reply(item) for item in items]
        if isinstance(value, (bytes, int)):
            return value
        return None                                          # functions, userdata ...: nil

    @staticmethod
    def _error_text(error: Any) -> str:
        if lua51.lua_type(error) == "table" and isinstance(error[b"err"], bytes):
            return error[b"err"].decode(errors="replace")
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"ERR {text}"

    # --- cjson ---------------------------------------------------------------------------------

    def _decode(self, text: Any) -> Any:
        """cjson.decode: objects and arrays as tables (arrays from 1), null as cjson.null, strings as
        their UTF-8 bytes, numbers as Lua numbers."""
        if not isinstance(text, bytes):
            raise ValueError("bad argument #1 to 'decode' (string expected)")
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"Expected value but found invalid token: {error}") from None
        value = self._for_lua(value)
        return self.runtime.table_from(value, recursive=True) if isinstance(value, (list, dict)) else value

    def _for_lua(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return value.encode()
        if kind is list:        # strings converted inline: most items of an apply payload are strings
            return [item.encode() if type(item) is str else self._for_lua(item) for item in value]
        if kind is dict:
            return {key.encode(): self._for_lua(item) for key, item in value.items()}
        if value is None:
            return self.null
        if kind is int and abs(value) >= 2 ** 53:
            return float(value)                              # cjson reads every number as a double
        return value

    def _encode(self, value: Any) -> bytes:
        """cjson.encode: a table whose keys are 1..n is an array, any other an object (an empty one
        is {}); numbers as %.14g; '/' escaped as cjson does."""
        return json.dumps(self._from_lua(value), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).replace("/", "\\/").encode("utf-8", "surrogateescape")

    def _from_lua(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError("Cannot serialise number: must not be NaN or Inf")
            return json.loads(b"%.14g" % number)
        if lua51.lua_type(value) == "userdata" and self.is_null(value):
            return None
        if lua51.lua_type(value) != "table":
            raise ValueError(f"Cannot serialise {lua51.lua_type(value)}: type not supported")
        items = list(value.items())
        if items and all(isinstance(k, int) and not isinstance(k, bool) for k, _ in items) \
                and sorted(k for k, _ in items) == list(range(1, len(items) + 1)):
            return [self._from_lua(v) for _, v in sorted(items, key=lambda item: item[0])]
        objects = {}
        for key, item in items:
            if isinstance(key, bytes):
                key = key.decode("utf-8", "surrogateescape")
            elif isinstance(key, (int, float)) and not isinstance(key, bool):
                key = (b"%.14g" % key).decode()
            else:
                raise ValueError("Cannot serialise table: table key must be a number or string")
            objects[key] = self._from_lua(item)
        return objects


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


def _span(items: list, start: int, stop: int) -> slice:
    """Redis's inclusive start..stop of a list, negative counting from its end, as a slice."""
    size = len(items)
    start, stop = (start + size if start < 0 else start), (stop + size if stop < 0 else stop)
    return slice(max(start, 0), max(stop + 1, 0))
