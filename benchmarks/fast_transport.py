"""Faust's per-message path made cheaper, still one event per record: a benchmark-only transport.

The worker's own path, one event per fetched chunk, is streams/worker/kafka_transport.py (the
`noop-chunked` mode); this one measures how far per-event delivery alone gets (`noop-fast`).
Plugged in through Faust's transport registry (`broker="fastkafka://..."`) and app settings
(`Monitor`, `Schema`); faust-streaming itself is not patched. Why each piece (profiles in
benchmarks/PROFILE.md):

* `FastConsumer`: upstream `Consumer._drain_messages` awaits `wait_first(callback(message),
  suspend_flow.wait())` per record: four futures and an `asyncio.wait` per message, the
  ~12 k msg/s ceiling. Here the callback's first step runs inline; only when it blocks
  (stream buffer full) does the upstream wait take over, so a rebalance still interrupts it.
  While partitions are paused for a full buffer it polls every 20 ms instead of sleeping 1 s.
* `RawSchema` / `LeanMonitor`: no serializer-registry lookups for raw-bytes topics and no
  per-event sensor bookkeeping (~10 %).

These override private methods of faust-streaming 0.15.3 (`_drain_messages`, `getmany`,
`_wait_next_records`): pinned, and to be re-diffed on any upgrade.
"""
from __future__ import annotations

import asyncio
import types
from typing import Any, AsyncIterator, Tuple, cast

from faust.transport.drivers import aiokafka as _aiokafka
import faust
from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import TRANSPORTS


@types.coroutine
def _continue(coro, yielded):
    """Finish a coroutine already stepped once (it yielded `yielded`), inside the current task."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # CancelledError etc.: deliver into the callback
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _resume(coro, yielded):
    return await _continue(coro, yielded)


class FastConsumer(_aiokafka.Consumer):
    wake_on_drop = True
    paused_poll_timeout = 0.02

    def on_init(self) -> None:
        super().on_init()
        self._flow_resumed = asyncio.Event()

    def on_buffer_drop(self, tp) -> None:
        super().on_buffer_drop(tp)
        ev = getattr(self, "_flow_resumed", None)
        if ev is not None:
            ev.set()

    async def _wait_next_records(self, timeout: float):
        # Upstream (consumer.py:776) sleeps a full second when every partition is paused because
        # its stream buffer is full, even if the agent drains the buffer in milliseconds.
        # Here we wake up as soon as any buffer drops below its low-water mark.
        if not self.wake_on_drop or self.app.client_only or not self.flow_active:
            return await super()._wait_next_records(timeout)
        ev = self._flow_resumed
        if not self._get_active_partitions():
            ev.clear()
            try:
                await asyncio.wait_for(ev.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            active = self._get_active_partitions()
            if not active:
                return {}, active
        return await super()._wait_next_records(timeout)

    async def _fetch(self, timeout: float) -> tuple[Any, Any, int] | None:
        """Upstream getmany's prologue: the next records, or None when there is nothing to yield.

        The highwater is tracked once per partition per fetch, not per record.
        """
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return None
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as ex:
                self.log.warning(f"exception performing seek when flow not active {ex}")
            return None
        track = self.app.monitor.track_tp_end_offset
        for tp in records:
            track(tp, self.highwater(tp))
        return records, active_partitions, generation_id

    async def getmany(self, timeout: float) -> AsyncIterator[Tuple[Any, Any]]:
        fetched = await self._fetch(timeout)
        if fetched is None:
            return
        records, active_partitions, generation_id = fetched
        to_message = self._to_message
        buffered = self._buffered_partitions
        app = self.app
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or app.consumer_generation_id != generation_id:
                break
            if active_partitions is None or tp in active_partitions or tp in buffered:
                yield tp, to_message(tp, record)

    async def _drain_messages(self, fetcher) -> None:  # mirrors faust/transport/consumer.py:1165
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        yield_every, num_since_yield = 100, 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                # Upstream polls with timeout=1.0 for whatever partitions are active *now*.  When the
                # topic's partitions are paused (stream buffer full) the only active partition left
                # may be an idle one (the app's __assignor-__leader topic), so the poll sleeps a full
                # second even if the agent drains its buffer in 50 ms.  Poll briefly while paused.
                ait = cast(AsyncIterator, getmany(timeout=self.paused_poll_timeout if self._buffered_partitions else 1.0))
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset:
                                if acks_enabled_for(message.topic):
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # Fast path: run the callback's first step right here. It normally
                            # completes without suspending (put_nowait into the stream queue).
                            coro = callback(message)
                            try:
                                yielded = coro.send(None)
                            except StopIteration:
                                pass
                            else:
                                # It blocked (stream buffer full / conductor lock): keep upstream's
                                # behaviour, i.e. a stop_flow() (rebalance) interrupts the wait.
                                await self.wait_first(_resume(coro, yielded), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class Transport(_aiokafka.Transport):
    Consumer = FastConsumer





class RawSchema(faust.Schema):
    """Pass-through schema for raw-bytes topics: the event gets message.key/value as-is,
    skipping the serializer registry (3 calls + codec lookup per key and per value)."""

    def compile(self, app, *, on_key_decode_error=None, on_value_decode_error=None,
                default_propagate=False):
        create_event = app.create_event

        async def decode(message, *, propagate=default_propagate):
            return create_event(message.key, message.value, message.headers, message)

        return decode


class LeanMonitor(Monitor):
    """Monitor that keeps the totals but skips per-event per-stream/per-task bookkeeping."""

    def on_message_in(self, tp, offset, message) -> None:
        self.messages_received_total += 1
        self.tp_read_offsets[tp] = offset

    def on_stream_event_in(self, tp, offset, stream, event):
        self.events_total += 1
        return None

    def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
        pass

    def on_message_out(self, tp, offset, message) -> None:
        pass





def register() -> None:
    """Make `fastkafka://` broker URLs resolve to this transport."""
    TRANSPORTS.aliases["fastkafka"] = "benchmarks.fast_transport:Transport"
