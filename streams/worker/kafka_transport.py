"""The worker's Kafka transport: Faust's aiokafka transport with chunked consumption and an idempotent producer.

Chunked consumption (`ChunkedConsumer`), why: Faust's per-message path costs more than our
own per-event work. A no-op agent on Faust's defaults reads ~12 k events/s, 1/31 of a raw
aiokafka consumer (benchmarks/PROFILE.md): per record the drain loop awaits `wait_first`
(four futures and an `asyncio.wait`), the conductor spawns a task, the stream builds an event
and runs its sensors. Here a fetch yields one Faust message per partition (a `Chunk` of up to
`broker_max_poll_records` records), so all of that is paid once per chunk.

The idempotent producer (`IdempotentProducer`), why: outputs are sent with `acks=all`; when a
broker dies mid-request the producer retries, and without idempotence a retried batch the
old leader had already replicated is written twice. Faust enables idempotence only inside
transactions (exactly-once), which we do not use.

Plugged in through Faust's extension points: the transport registry (the app's
`broker_consumer` and `broker_producer` URLs have the scheme `engage://`), the events
topic's `schema` (`ChunkSchema`) and the app settings `broker_max_poll_records` and
`stream_buffer_maxsize`. Where that does not suffice, this module overrides private methods of
faust-streaming `VALIDATED_FAUST`, each with a docstring saying why, and the worker refuses to
start on any other version (`check_faust_version`), so that an upgrade is re-read against
upstream first. `ENGAGE_CONSUMPTION=stock` runs Faust unmodified (none of this module).

Delivery stays at-least-once: a chunk is acked only after the agent's body has put its
effects in Redis and published its outputs, and acking its last offset is what makes every
offset of the chunk committable (`_new_offset`). Exactness comes, as on the stock path, from
the event-id dedup in the same Redis transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from importlib.metadata import version
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import TP, ConsumerMessage

from streams.settings import ENV, SettingsError

VALIDATED_FAUST = "0.15.3"
SCHEME = "engage"
PAUSED_POLL_S = 0.02   # how long a fetch waits while every busy partition is paused (stream buffer full)


def check_faust_version(installed: str | None = None) -> None:
    """Refuse a faust-streaming other than the one the overrides below were read against."""
    installed = installed or version("faust-streaming")
    if installed != VALIDATED_FAUST:
        raise SettingsError(ENV["consumption"], f"chunked consumption overrides private methods of faust-streaming "
                                                f"{VALIDATED_FAUST}, but {installed} is installed: pin "
                                                f"faust-streaming=={VALIDATED_FAUST} or set {ENV['consumption']}=stock")


def register() -> None:
    """Make `engage://host:port` broker URLs resolve to this transport (idempotent)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:EngageTransport"


class Chunk(ConsumerMessage):
    """Consecutive records of one partition as one message.

    `offset` is the last record's (what Faust tracks and acks), `first_offset` the first's,
    and `value` the aiokafka records themselves (key, value, offset and timestamp each).
    """

    __slots__ = ("first_offset",)


class ChunkSchema(faust.Schema):
    """The events topic's schema on the chunked path: the event's value is the chunk's records as
    fetched (decoding each is the scoring core's job, not a serializer's)."""

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Any:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode


class ChunkedConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering one `Chunk` per partition per fetch."""

    def on_init(self) -> None:
        super().on_init()
        self._chunk_starts: dict[TP, dict[int, int]] = {}   # per partition: chunk's last offset -> first
        self._resumed = asyncio.Event()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, ConsumerMessage]]:
        """Override: one `Chunk` per partition of the fetch instead of one message per record.

        Otherwise as upstream: partitions in round-robin (`scheduler`), nothing yielded once the
        flow stops or the generation changes (a rebalance), a seek to the committed offsets when
        called with the flow stopped, the highwater tracked per partition.
        """
        records, active = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:  # noqa: BLE001 - as upstream: the next fetch tries again
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        for tp, batch in records.items():
            if not batch:
                continue
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, self._chunk(tp, batch, generation_id)

    def _chunk(self, tp: TP, batch: list[Any], generation_id: int) -> Chunk:
        first, last = batch[0], batch[-1]
        chunk = Chunk(last.topic, last.partition, last.offset,
                      last.timestamp / 1000.0 if last.timestamp is not None else None,
                      last.timestamp_type, last.headers, None, batch, None,
                      0, sum(record.serialized_value_size for record in batch), tp, generation_id=generation_id)
        chunk.first_offset = first.offset
        self._chunk_starts.setdefault(tp, {})[last.offset] = first.offset
        return chunk

    async def _drain_messages(self, fetcher: Any) -> None:
        """Override of upstream's fetch loop (faust/transport/consumer.py, `_drain_messages`).

        Two changes. The gap check measures from the chunk's *first* offset: upstream compares
        the message's offset (a chunk's last) with the last one read and would record the
        chunk's own records as a gap, i.e. as acked before the agent has applied them. And
        while a partition is paused because its stream buffer is full, the poll waits
        PAUSED_POLL_S instead of 1 s, so a buffer drained in milliseconds is refilled at once.
        """
        callback = self.callback
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                chunks = self.getmany(timeout=PAUSED_POLL_S if self._buffered_partitions else 1.0)
                await self.sleep(0)   # as upstream: getmany may return at once, over and over
                if self.should_stop:
                    continue
                async for tp, chunk in chunks:
                    last, first = chunk.offset, getattr(chunk, "first_offset", chunk.offset)
                    previous = read_offset[tp]
                    if previous is not None and last < previous:
                        continue   # read before a seek moved back: upstream drops it too
                    if previous and first - previous > 1 and acks_enabled_for(chunk.topic):
                        await self._add_gap(tp, previous + 1, first - 1)   # offsets the log has not (compaction)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.wait_first(callback(chunk), self.suspend_flow.wait())
                    read_offset[tp] = last
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _wait_next_records(self, timeout: float) -> Any:
        """Override: when every partition is paused, wait for a buffer to drain, not a fixed 1 s.

        Upstream sleeps a full second when no partition is active, however soon the agent
        empties its buffer; here the wait ends as soon as `on_buffer_drop` resumes one.
        """
        if self.flow_active and not self.app.client_only and not self._get_active_partitions():
            self._resumed.clear()
            try:
                await asyncio.wait_for(self._resumed.wait(), timeout=timeout)
            except asyncio.TimeoutError:
                pass
            if not self._get_active_partitions():
                return {}, self._get_active_partitions()
        return await super()._wait_next_records(timeout)

    def on_buffer_drop(self, tp: TP) -> None:
        """A stream buffer drained below its low-water mark: resume its partition and wake the fetch."""
        super().on_buffer_drop(tp)
        self._resumed.set()

    def _new_offset(self, tp: TP) -> int | None:
        """Override: an acked chunk acks every offset in it, then upstream computes the offset.

        Acks record only the message's offset, the chunk's last (the Cython stream iterator
        inlines `ack`, so expanding here is the one place that sees all of them).
        """
        starts = self._chunk_starts.get(tp)
        if starts:
            acked = self._acked[tp]
            interior = [offset for last in acked if (first := starts.pop(last, last)) < last
                        for offset in range(first, last)]
            acked.extend(interior)
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Forget the chunks of revoked partitions, as upstream forgets their acks."""
        for tp in revoked:
            self._chunk_starts.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with `enable_idempotence` (which needs and keeps `acks=all`)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        """Override: upstream returns idempotence only inside a transaction, `{}` otherwise."""
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class EngageTransport(faust_aiokafka.Transport):
    Consumer = ChunkedConsumer
    Producer = IdempotentProducer
