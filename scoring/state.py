"""Per-customer state and its update.

A customer's state is a fold of contributions (see :mod:`scoring.contributions`):
counters per time bucket, newest activity times, membership changes and session
stats. Scores are derived from it at read time, so a weight change re-scores every
customer without a replay. One aggregate's rules live here together (apply, evict,
sessions, running window counts), hence its length.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from scoring.config import Config
from scoring.contributions import JOIN, Contribution, SessionDelta
from scoring.events import Event
from scoring.traits import TraitValue
from scoring.windows import bucket_of, retained_from_bucket


@dataclass(slots=True)
class SessionStats:
    """One web/app session. An ended session is *activated* when it holds an action; else it
    *bounced* with at most one page view, or was *abandoned* after more (docs/scores-and-kpis.md: metrics #33, #35)."""

    anchor_ms: int           # earliest event time seen for the session: it counts in that bucket
    pages: int = 0
    actions: int = 0
    ended: bool = False
    last_ms: int = 0         # newest event time seen for the session: it closes a lateness after it

    @property
    def bounced(self) -> bool:
        return self.ended and self.pages <= 1 and self.actions == 0

    @property
    def activated(self) -> bool:
        return self.ended and self.actions > 0

    def counts(self, bucket_ms: int) -> tuple[int, tuple[tuple[str, int], ...]]:
        """(bucket, counters): what the session adds to its bucket's counters (an open one: nothing)."""
        if not self.ended:
            return self.anchor_ms // bucket_ms, ()
        return self.anchor_ms // bucket_ms, (
            (SESSIONS, 1), *(((BOUNCES, 1),) if self.bounced else ()),
            *(((ACTIVATED_SESSIONS, 1),) if self.activated else ()))

    def add(self, delta: SessionDelta) -> None:
        self.anchor_ms = min(self.anchor_ms, delta.ts_ms)
        self.last_ms = max(self.last_ms, delta.ts_ms)
        self.pages += delta.pages
        self.actions += delta.actions
        self.ended = self.ended or delta.ended


# counter keys: ended sessions, bounces and activated sessions anchored in a bucket
SESSIONS, BOUNCES, ACTIVATED_SESSIONS = "sessions", "bounces", "sessions_activated"


@dataclass(slots=True)
class Journal:
    """What apply changed while the journal was open: what a store adds to its shared totals and ids.

    Kept as the changes happen, so that a batch's delta costs what its events touched,
    not a copy and comparison of everything the customer holds.
    """

    counters: dict[int, dict[str, int]] = field(default_factory=dict)   # bucket -> key -> increment
    ids: dict[str, int] = field(default_factory=dict)                    # event ids added -> ts


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    watermark_ms: int | None = None                       # newest accepted event time
    buckets: dict[int, dict[str, int]] = field(default_factory=dict)
    last_active_ms: int | None = None                     # newest activity-type event
    last_aer_ms: int | None = None                        # newest AER activity event
    features: dict[str, int] = field(default_factory=dict)  # feature key -> last use
    membership: list[tuple[int, int]] = field(default_factory=list)  # sorted (ts, JOIN|LEAVE)
    sessions: dict[str, SessionStats] = field(default_factory=dict)
    account: tuple[int, str, str] | None = None           # (ts, event_id, account_id) of the newest event naming one
    segment: tuple[int, str, str] | None = None
    # None until set: most customers have neither, and an empty dict each costs memory and GC time
    traits: dict[str, tuple[int, str, TraitValue]] | None = None   # name -> (ts, event_id, value)
    imports: dict[str, tuple[int, int]] | None = None              # import id -> (last row, newest ts) applied
    seen: dict[str, int] = field(default_factory=dict)    # event_id -> ts, within the dedup horizon
    seen_by_time: list[tuple[int, str]] | None = field(default=None, compare=False, repr=False)  # a heap of seen
    sessions_by_last: list[tuple[int, str]] | None = field(default=None, compare=False, repr=False)  # a heap
    journal: Journal | None = field(default=None, compare=False, repr=False)    # open while a store records
    bucket_floor: int | None = field(default=None, compare=False, repr=False)  # no bucket is older; None: unknown
    running: list[RunningCounts | None] = field(default_factory=lambda: [None, None], compare=False, repr=False)

    @property
    def account_id(self) -> str | None:
        return self.account[2] if self.account else None

    @property
    def segment_name(self) -> str | None:
        """The `segment` of its newest event that names one."""
        return self.segment[2] if self.segment else None

    def segment_in(self, config: Config) -> str | None:
        """Its segment: the events' (`segment_name`), or its trait `scoring.segment_from` names."""
        if config.segment_from is None:
            segment = self.segment
            return segment[2] if segment else None
        entry = self.traits.get(config.segment_from) if self.traits else None
        return entry[2] if entry is not None and isinstance(entry[2], str) else None

    def apply(self, event: Event, contrib: Contribution, now_ms: int, config: Config) -> None:
        """Fold one accepted, non-duplicate event in. Gating happens before (see scoring.engine).
        An imported event is remembered by its import's row, not its id (scoring.history_import)."""
        if event.imported is None:
            self.seen[event.event_id] = event.ts_ms
            journal = self.journal
            if journal is not None:
                journal.ids[event.event_id] = event.ts_ms
            if self.seen_by_time is not None:
                heapq.heappush(self.seen_by_time, (event.ts_ms, event.event_id))
        else:
            import_id, row = event.imported
            imports = self.imports if self.imports is not None else {}
            last = imports.get(import_id, (-1, event.ts_ms))
            imports[import_id] = (max(last[0], row), max(last[1], event.ts_ms))
            self.imports = imports
        self.watermark_ms = _max(self.watermark_ms, event.ts_ms)
        if contrib.active:
            self.last_active_ms = _max(self.last_active_ms, event.ts_ms)
        if contrib.aer_active:
            self.last_aer_ms = _max(self.last_aer_ms, event.ts_ms)
        for key in contrib.features:
            self.features[key] = max(self.features.get(key, event.ts_ms), event.ts_ms)
        if contrib.membership is not None:
            entry = (event.ts_ms, contrib.membership)
            position = bisect.bisect_left(self.membership, entry)
            if position == len(self.membership) or self.membership[position] != entry:
                self.membership.insert(position, entry)
        if event.account_id is not None:
            self.account = max(self.account or (-1, "", ""), (event.ts_ms, event.event_id, event.account_id))
        if event.segment is not None:
            self.segment = max(self.segment or (-1, "", ""), (event.ts_ms, event.event_id, event.segment))
        if event.traits:
            self._set_traits(event)

        if contrib.bucket < retained_from_bucket(now_ms, config):
            return  # older than anything a score can read: only the facts above matter
        self._count(contrib.bucket, contrib.counters)
        if contrib.session is not None:
            self._update_session(contrib.session, config.scoring.bucket_ms)

    def _set_traits(self, event: Event) -> None:
        """Each trait the event sets, unless a newer event set it."""
        stamp = (event.ts_ms, event.event_id)
        traits = self.traits if self.traits is not None else {}
        for name, value in event.traits or ():
            current = traits.get(name)
            if current is None or stamp > current[:2]:
                traits[name] = (*stamp, value)
        self.traits = traits or None

    def trait_values(self) -> dict[str, TraitValue]:
        """The known traits' newest values."""
        return {name: entry[2] for name, entry in (self.traits or {}).items() if entry[2] is not None}

    def counts_from(self, first: int, slot: int = 0) -> dict[str, int]:
        """Event counts per type over every bucket from `first` on (a window: see scoring.windows).

        Kept running in `slot` (0: the score window, 1: the score-drop reference), so that a
        score costs what changed since the last one, not a sum over the window's buckets:
        counters add to it as they are counted, and moving `first` forward subtracts only
        the buckets that left. The dict is live: copy it to keep it.
        """
        running = self.running[slot]
        if running is None or first < running.first:
            running = self.running[slot] = self._fresh_counts(first)
        elif first > running.first:
            running.advance(first, self.buckets)
        return running.counts

    def _fresh_counts(self, first: int) -> RunningCounts:
        """Counts from `first` on: another window's that starts later plus the buckets between
        (the score-drop reference is the score window plus a few older buckets), else a full sum."""
        later = [r for r in self.running if r is not None and r.first >= first]
        if not later:
            return RunningCounts(first, count_totals(self.buckets, first))
        base = min(later, key=lambda r: r.first)
        fresh = RunningCounts(first, dict(base.counts))
        for bucket in buckets_between(self.buckets, first, base.first):
            fresh.add(self.buckets[bucket].items())
        return fresh

    def _count(self, bucket: int, amounts: Iterable[tuple[str, int]]) -> None:
        if self.bucket_floor is not None and bucket < self.bucket_floor:
            self.bucket_floor = bucket
        for running in self.running:
            if running is not None and bucket >= running.first:
                running.add(amounts)
        counters = self.buckets.setdefault(bucket, {})
        for key, amount in amounts:
            total = counters.get(key, 0) + amount
            if total:
                counters[key] = total
            else:
                counters.pop(key, None)    # zero is no count (a session un-bounced; a 0 value)
        if self.journal is not None:
            changed = self.journal.counters.setdefault(bucket, {})
            for key, amount in amounts:
                changed[key] = changed.get(key, 0) + amount

    def _update_session(self, delta: SessionDelta, bucket_ms: int) -> None:
        """Fold one event into its session, and the session's change into the buckets' counters
        (sessions and bounces count there, so a closed session can be forgotten)."""
        sid = delta.session_id
        session = self.sessions.get(sid)
        before = None
        if session is None:
            session = self.sessions[sid] = SessionStats(delta.ts_ms, last_ms=delta.ts_ms)
        else:
            before = session.counts(bucket_ms)
        session.add(delta)
        after = session.counts(bucket_ms)
        if after != before:
            if before is not None and before[1]:
                self._count(before[0], tuple((key, -amount) for key, amount in before[1]))
            if after[1]:
                self._count(*after)
        if self.sessions_by_last is not None:
            heapq.heappush(self.sessions_by_last, (session.last_ms, sid))

    def evict(self, now_ms: int, config: Config) -> None:
        """Drop what no score can read any more, keeping memory bounded.

        Cheap when nothing is due: buckets are looked at only when the oldest one (a floor
        kept by apply) has left the retention; a session is anchored in a bucket that held
        its first event, so sessions only when a bucket goes; event ids only when the
        oldest one has fallen behind the dedup horizon (a heap by time finds them).
        """
        oldest = retained_from_bucket(now_ms, config)
        floor = self.bucket_floor
        if floor is None:
            floor = min(self.buckets, default=oldest)
        gone: list[int] = []
        if floor < oldest:
            gone = [b for b in self.buckets if b < oldest]
            floor = min((b for b in self.buckets if b >= oldest), default=oldest)
        self.bucket_floor = floor
        if gone:
            self.running = [r if r is None or r.first > max(gone) else None for r in self.running]
        for bucket in gone:
            del self.buckets[bucket]
        if gone and self.sessions:
            for sid in [s for s, x in self.sessions.items() if bucket_of(x.anchor_ms, config.scoring.bucket_ms) < oldest]:
                self._close_session(sid)
        if self.sessions and self.watermark_ms is not None:
            # closed: no event a lateness behind the watermark can still change it
            closing = self.watermark_ms - config.time.allowed_lateness_ms
            heap = self.sessions_by_last
            if heap is None:
                heap = self.sessions_by_last = [(x.last_ms, sid) for sid, x in self.sessions.items()]
                heapq.heapify(heap)
            while heap and heap[0][0] < closing:
                last, sid = heapq.heappop(heap)
                session = self.sessions.get(sid)
                if session is not None and session.last_ms == last:
                    self._close_session(sid)
        if self.imports:        # an import whose every row is past the retention: any row again is refused
            edge = oldest * config.scoring.bucket_ms
            for import_id in [i for i, (_, newest) in self.imports.items() if newest < edge]:
                del self.imports[import_id]
            self.imports = self.imports or None
        if self.watermark_ms is not None and self.seen:
            horizon = self.watermark_ms - config.time.dedup_horizon_ms
            heap = self.seen_by_time
            if heap is None:
                heap = self.seen_by_time = [(ts, e) for e, ts in self.seen.items()]
                heapq.heapify(heap)
            while heap and heap[0][0] < horizon:
                ts, event_id = heapq.heappop(heap)
                if self.seen.get(event_id) == ts:
                    del self.seen[event_id]

    def _close_session(self, sid: str) -> None:
        """Forget a session whose counts are final (they stay in the buckets' counters)."""
        del self.sessions[sid]

    def is_member(self, at_ms: int) -> bool:
        """Member at `at_ms`: the latest membership change at or before it was a join."""
        position = bisect.bisect_right(self.membership, (at_ms, LEAVE_SENTINEL))
        return position > 0 and self.membership[position - 1][1] == JOIN

    def membership_start(self, at_ms: int) -> int | None:
        """When the membership current at `at_ms` began (None when not a member then)."""
        if not self.is_member(at_ms):
            return None
        position = bisect.bisect_right(self.membership, (at_ms, LEAVE_SENTINEL))
        start = None
        for ts, kind in reversed(self.membership[:position]):
            if kind != JOIN:
                break
            start = ts
        return start

    def joins_between(self, after_ms: int, until_ms: int) -> list[int]:
        """Start times of memberships that began in (after_ms, until_ms]."""
        starts = []
        previous_kind = None
        for ts, kind in self.membership:
            if kind == JOIN and previous_kind != JOIN and after_ms < ts <= until_ms:
                starts.append(ts)
            previous_kind = kind
        return starts


@dataclass(slots=True)
class RunningCounts:
    """Event counts per type (the `n.<type>` counters) over every bucket from `first` on."""

    first: int
    counts: dict[str, int]

    def add(self, amounts: Iterable[tuple[str, int]]) -> None:
        counts = self.counts
        for key, amount in amounts:
            if key.startswith(COUNT_PREFIX):
                name = key[2:]
                total = counts.get(name, 0) + amount
                if total:
                    counts[name] = total
                else:
                    counts.pop(name, None)

    def advance(self, first: int, buckets: dict[int, dict[str, int]]) -> None:
        """Move the start forward to `first`, subtracting the buckets that left."""
        for bucket in buckets_between(buckets, self.first, first):
            self.add((key, -amount) for key, amount in buckets[bucket].items())
        self.first = first


def buckets_between(buckets: dict[int, dict[str, int]], low: int, high: int) -> list[int]:
    """The held buckets in [low, high), looked up one by one or found by a scan, whichever is shorter."""
    if high - low <= len(buckets):
        return [b for b in range(low, high) if b in buckets]
    return [b for b in buckets if low <= b < high]


def count_totals(buckets: dict[int, dict[str, int]], first: int) -> dict[str, int]:
    """Event counts per type summed over the buckets from `first` on."""
    counts: dict[str, int] = {}
    for bucket, counters in buckets.items():
        if bucket >= first:
            for key, amount in counters.items():
                if key.startswith(COUNT_PREFIX):
                    name = key[2:]
                    counts[name] = counts.get(name, 0) + amount
    return {name: n for name, n in counts.items() if n}


COUNT_PREFIX = "n."   # the counter key of an event type's count (scoring.contributions.count_key)
LEAVE_SENTINEL = 2  # sorts after both JOIN and LEAVE at the same timestamp


def _max(current: int | None, candidate: int) -> int:
    return candidate if current is None or candidate > current else current
