"""The worker's memory of the customers it wrote last, so that a batch need not read them back.

Redis stays the only source of truth. Every write stamps each written customer's facts hash
with a token unique to that write (field `v`, see streams.state.layout.write_delta), and a
remembered customer is used only while Redis still holds the token this worker wrote.
Anything else (another worker wrote the customer after a rebalance, a replay rebuilt it,
Redis lost it or restored an older copy) reads the customer afresh. So a hit costs one HGET
where a miss reads and decodes every retained counter and open session, and the core's
running window counts (scoring.state.RunningCounts) survive from batch to batch: a due
re-score of a customer whose bucket left the window costs that bucket, not the window.

An entry is taken out while a batch works on it and put back only after the write that
made it true succeeded, so a failed or conflicting write leaves nothing stale behind.
Bounded: the least recently written customers go first (`ENGAGE_STATE_CACHE_CUSTOMERS`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from scoring.deltas import Stored


class StateCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, Stored]] = OrderedDict()
        self.hits = 0       # customers read with one HGET
        self.misses = 0     # customers not remembered: read whole
        self.stale = 0      # remembered, but someone else wrote them since: read whole

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, customer_ids: Iterable[str]) -> dict[str, tuple[str, Stored]]:
        """The remembered customers among `customer_ids` with the token they were written
        with, out of the cache until `keep` puts them back."""
        taken = {}
        for cid in customer_ids:
            entry = self._entries.pop(cid, None)
            if entry is not None:
                taken[cid] = entry
        return taken

    def keep(self, token: str, written: Mapping[str, Stored]) -> None:
        """Remember customers as the write stamped `token` left them in Redis."""
        if self.capacity <= 0:
            return
        entries = self._entries
        for cid, stored in written.items():
            entries.pop(cid, None)
            entries[cid] = (token, stored)
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
