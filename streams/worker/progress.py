"""How far the worker is: the next offset to process per partition, the consumer lag, a stall."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.worker.batch import Incoming
from streams.worker.stall import StallWatch


class Progress:
    """Positions of the partitions this worker processes, and what they say of its lag."""

    def __init__(self, events_topic: str, consumer: Callable[[], Any], stall_after_s: float) -> None:
        self.events_topic = events_topic
        self.consumer = consumer      # Faust's consumer, once the app has started
        self.positions: dict[tuple[str, int], int] = {}   # next offset to process, per partition
        self.stall = StallWatch(stall_after_s)

    def advanced(self, batch: Iterable[Incoming]) -> None:
        """A batch is done: its partitions move on past it, and the worker is not stalled."""
        for message in batch:
            key = (message.topic, message.partition)
            self.positions[key] = max(self.positions.get(key, 0), message.offset + 1)
        self.stall.progressed()

    def assigned(self) -> list[Any]:
        return [tp for tp in self.consumer().assignment() if tp.topic == self.events_topic]

    def lag(self) -> int:
        """Messages waiting in the assigned partitions: each one's high watermark less the next offset
        to process, which is the group's committed offset until this worker processes a message of
        the partition (one back from another worker must not count what that worker processed)."""
        consumer = self.consumer()
        committed = getattr(consumer, "_committed_offset", {})   # Faust's: the next offset to read, per partition
        total = 0
        for tp in self.assigned():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                start = max(self.positions.get((tp.topic, tp.partition), 0), committed.get(tp) or 0)
                total += max(0, highwater - start)
        return total

    def forget(self, revoked: Iterable[Any]) -> None:
        """Positions of partitions taken away: another worker moves them on meanwhile."""
        for tp in revoked:
            self.positions.pop((tp.topic, tp.partition), None)

    def watch(self) -> None:
        """The stall watch's periodic look at the lag."""
        self.stall.observe(self.lag())
