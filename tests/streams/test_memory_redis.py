"""The in-memory Redis (tests/streams/memory_redis.py) runs the product's real Lua scripts.

Fast tier: the text `RedisStore` registers is interpreted (a changed copy gives another
result), apply.lua's version check holds, and what a script sees and returns is converted as
Redis converts it (redis.call's replies into Lua, the script's value back to the client).
"""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ResponseError

from streams.state.layout import Keys, Ops, ShardTotals
from streams.state.store import APPLY, RANK_PROBE, READ_MANY, SUM_HASHES
from tests.streams.memory_redis import MemoryRedis


def run(redis: MemoryRedis, script: str, keys=(), args=()):  # type: ignore[no-untyped-def]
    return asyncio.run(redis.register_script(script)(keys=list(keys), args=list(args)))


def test_a_changed_copy_of_a_script_gives_its_own_result():
    redis = MemoryRedis()
    redis._hset("t1", "a", "2", "b", "5")
    redis._hset("t2", "a", "3")
    assert run(redis, SUM_HASHES, ["t1", "t2"]) == [b"a", b"5", b"b", b"5"]
    doubled = SUM_HASHES.replace("totals[field] + tonumber(flat[i + 1])", "totals[field] + 2 * tonumber(flat[i + 1])")
    assert doubled != SUM_HASHES
    assert run(redis, doubled, ["t1", "t2"]) == [b"a", b"10", b"b", b"10"]


def test_apply_writes_only_while_every_checked_version_is_the_one_read():
    redis = MemoryRedis()
    redis._hset("facts:a", "v", "7")

    def ops(version_a: str) -> Ops:
        ops = Ops()
        ops.check("facts:a", version_a)
        ops.check("facts:b", "0")                    # never written: its version reads as "0"
        ops.add("HSET", "facts:a", "v", "8")
        ops.add("ZADD", "due", 1000, "a")
        ops.add("SADD", "touched", "acct-1", "acct-2")
        return ops

    moved = ops("6")
    assert run(redis, APPLY, moved.keys, [moved.payload()]) == 0
    assert redis.data == {b"facts:a": {b"v": b"7"}}              # nothing of the batch written
    current = ops("7")
    assert run(redis, APPLY, current.keys, [current.payload()]) == 1
    assert redis.data == {b"facts:a": {b"v": b"8"}, b"due": {b"a": 1000.0}, b"touched": {b"acct-1", b"acct-2"}}
    assert run(redis, APPLY, current.keys, [current.payload()]) == 0     # its own write moved "v" on


def test_the_interpreter_is_lua_5_1_as_in_redis_not_a_later_lua_or_luajit():
    redis = MemoryRedis()
    assert run(redis, "return _VERSION") == b"Lua 5.1"
    assert run(redis, "return {unpack({1, 2})}") == [1, 2]              # 5.2 moved it to table.unpack
    with pytest.raises(ResponseError, match="Error compiling script"):   # goto: LuaJIT and 5.2 on
        run(redis, "for i = 1, 2 do goto skip ::skip:: end return 1")


def test_an_op_of_over_8000_arguments_fails_as_in_redis():
    """Redis's Lua 5.1 unpacks at most ~8,000 values: why `Ops.add_many` splits a variadic command."""
    redis = MemoryRedis()
    whole = Ops()
    whole.add("SADD", "s", *(str(i) for i in range(9000)))
    with pytest.raises(ResponseError, match="too many results to unpack"):
        run(redis, APPLY, whole.keys, [whole.payload()])
    split = Ops()
    split.add_many("SADD", "s", ((str(i),) for i in range(9000)))
    assert run(redis, APPLY, split.keys, [split.payload()]) == 1
    assert len(redis.data[b"s"]) == 9000


def test_a_shard_write_that_marks_more_than_8000_accounts_is_applied():
    """A large batch (ENGAGE_BATCH_SIZE in the tens of thousands) can touch that many accounts in a
    shard: their SADD is split like every variadic command (it was one command, refused by Lua)."""
    redis, keys = MemoryRedis(), Keys("big")
    totals = ShardTotals.empty()
    totals.accounts = {f"acct-{i}" for i in range(9000)}
    ops = Ops()
    totals.write(ops, keys, 3)
    assert run(redis, APPLY, ops.keys, [ops.payload()]) == 1
    assert len(redis.data[keys.shared(3, "acct.touched").encode()]) == 9000


def test_lua_values_reach_the_client_as_redis_converts_them():
    redis = MemoryRedis()
    assert run(redis, "return 3.99") == 3 and run(redis, "return -3.99") == -3       # truncated toward 0
    assert run(redis, "return 'text'") == b"text"
    assert run(redis, "return true") == 1
    assert run(redis, "return false") is None and run(redis, "return nil") is None
    assert run(redis, "return {1, 2.5, 'x', true, false, {7, {'deep'}}, nil, 'after the nil'}") \
        == [1, 2, b"x", 1, None, [7, [b"deep"]]]
    assert run(redis, "return {}") == []
    assert run(redis, "return redis.status_reply('FINE')") == b"FINE"
    with pytest.raises(ResponseError, match="no such thing"):
        run(redis, "return redis.error_reply('no such thing')")
    nested = run(redis, "return {1, redis.error_reply('bad item')}")
    assert nested[0] == 1 and isinstance(nested[1], ResponseError) and "bad item" in str(nested[1])
    assert run(redis, "return {KEYS[2], ARGV[1], #KEYS, #ARGV, type(ARGV[2])}", ["k1", "k2"], [5, 2.5]) \
        == [b"k2", b"5", 2, 2, b"string"]                      # arguments arrive as strings


def test_redis_call_replies_reach_lua_as_redis_converts_them():
    redis = MemoryRedis()
    script = """
    local added = redis.call('HSET', KEYS[1], 'f', 0.1, 'n', 12)
    local missing = redis.call('HGET', KEYS[1], 'nothing')
    local all = redis.call('HGETALL', KEYS[1])
    redis.call('ZADD', KEYS[2], 1, 'a', 2, 'b', 3, 'c')
    local some = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '+inf', 'LIMIT', 1, tonumber('1'))
    return {type(added), added, type(missing), tostring(missing), type(all), #all,
            redis.call('HGET', KEYS[1], 'f'), redis.call('HGET', KEYS[1], 'n'), some[1], #some}
    """
    assert run(redis, script, ["h", "z"]) == [b"number", 2, b"boolean", b"false", b"table", 4,
                                              b"0.10000000000000001", b"12", b"b", 1]


def test_a_failing_command_raises_in_redis_call_and_is_returned_by_redis_pcall():
    redis = MemoryRedis()
    assert run(redis, "return redis.pcall('NOSUCHCOMMAND', KEYS[1]).err", ["k"]) \
        == b"ERR Unknown Redis command called from script"
    with pytest.raises(ResponseError, match="Unknown Redis command"):
        run(redis, "redis.call('NOSUCHCOMMAND', KEYS[1]) return 'not reached'", ["k"])
    with pytest.raises(ResponseError, match="Wrong number of args"):
        run(redis, "return redis.call('HGET', KEYS[1])", ["k"])
    with pytest.raises(ResponseError, match="must be strings or integers"):
        run(redis, "return redis.call('HGET', KEYS[1], {})", ["k"])
    assert run(redis, "local ok, e = pcall(redis.call, 'HINCRBY', KEYS[1], 'f', 'x') return e.err", ["k"]) \
        == b"ERR value is not an integer or out of range"
    with pytest.raises(ResponseError, match="must be GET or SMEMBERS"):    # read_many.lua's own error reply
        run(redis, READ_MANY, ["k"], ["HLEN"])


def test_a_no_writes_script_cannot_write_and_an_unknown_flag_is_refused():
    redis = MemoryRedis()
    body = "return redis.call('HSET', KEYS[1], 'f', 'v')"
    with pytest.raises(ResponseError, match="Write commands are not allowed from read-only scripts"):
        run(redis, "#!lua flags=no-writes\n" + body, ["h"])
    assert redis.data == {}
    assert run(redis, "#!lua\n" + body, ["h"]) == 1
    assert run(redis, "#!lua flags=no-writes\nreturn redis.call('HGET', KEYS[1], 'f')", ["h"]) == b"v"
    with pytest.raises(ResponseError, match="Unexpected flag in script shebang: no-such-flag"):
        run(redis, "#!lua flags=no-such-flag\nreturn 1")
    with pytest.raises(ResponseError, match="user_script:2:"):       # the shebang line still counts
        run(redis, "#!lua flags=no-writes\nreturn nil + 1")


def test_cjson_decodes_into_tables_counted_from_1_and_encodes_back():
    redis = MemoryRedis()
    decoded = """
    local doc = cjson.decode(ARGV[1])
    return {doc.list[1], doc.list[3], #doc.list, doc.list[2] == cjson.null, doc.text, doc.object.n + 1,
            type(doc.object.n), tostring(doc.yes)}
    """
    document = '{"list": [10, null, 30], "text": "caf\\u00e9", "object": {"n": 41}, "yes": true}'
    assert run(redis, decoded, [], [document]) == [10, 30, 3, 1, "café".encode(), 42, b"number", b"true"]
    assert run(redis, "return cjson.encode({1, 'a/b', {x = false}, cjson.null})") == b'[1,"a\\/b",{"x":false},null]'
    assert run(redis, "return cjson.encode({})") == b"{}"
    assert run(redis, "return cjson.encode(0.5)") == b"0.5"


def test_scripts_see_redis_s_sandbox_not_the_interpreter_s_globals():
    redis = MemoryRedis()
    with pytest.raises(ResponseError, match="nonexistent global variable 'os'"):
        run(redis, "return os.time()")
    with pytest.raises(ResponseError, match="nonexistent global variable 'python'"):
        run(redis, "return python")
    with pytest.raises(ResponseError, match="readonly table"):
        run(redis, "counter = 1 return counter")
    assert run(redis, "return {KEYS[1]}", ["first"]) == [b"first"]
    assert run(redis, "return {KEYS[1]}") == []                   # KEYS are the call's own


def test_rank_probe_and_read_many_run_on_the_new_lex_commands():
    redis = MemoryRedis()
    redis._zadd("r1", 0, "aa", 0, "ab", 0, "ba")
    redis._zadd("r2", 0, "ac", 0, "bb", 0, "ca")
    # the range [a, b): least and greatest over both keys; then how many sort below each bound
    assert run(redis, RANK_PROBE, ["r1", "r2"], ["a", "b", "ab", "b", "c", "d"]) == [b"aa", b"ac", 1, 3, 5, 6]
    assert run(redis, RANK_PROBE, ["r1", "r2"], ["x", "y"]) == [b"", b""]
    redis._set("f1", "one")
    redis._sadd("s1", "m2", "m1")
    assert run(redis, READ_MANY, ["f1", "f2"], ["GET"]) == [b"one", None]
    assert run(redis, READ_MANY, ["s1", "s2"], ["SMEMBERS"]) == [[b"m1", b"m2"], []]
