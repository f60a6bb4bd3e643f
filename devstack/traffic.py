"""Realistic synthetic traffic, deterministic for a seed. Pure: time is passed in.

Zipf-distributed activity over N customers grouped into accounts (or, with
`population="personas"`, a believable population: a few champions, engaged and casual
customers, a churning tail whose activity fades out and who leave, and dormant members),
a mix of every built-in event type (membership, sessions with page views and actions, surveys,
purchases, support tickets, marketing), plus a small share of duplicates, events
delayed within the allowed lateness, events late beyond it and malformed messages,
so every path of the scorer is exercised. Used by `./engage demo`, `./engage generate`,
the tests and the benchmarks.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import orjson

from scoring.messages import pack
from scoring.segment_spec import TrackMapping
from scoring.timeutil import DAY, HOUR, SECOND


class Kind(StrEnum):
    VALID = "valid"
    DELAYED = "delayed"        # out of order, but within the allowed lateness
    DUPLICATE = "duplicate"    # an exact re-send of an earlier message
    LATE = "late"              # far behind the customer's newest event: expect ts_too_late
    MALFORMED = "malformed"    # expect a rejection


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes
    value: bytes
    kind: Kind
    at_ms: int        # when the producer sends it (the simulated processing clock)


# Relative frequency of each activity type (membership is driven separately).
TYPE_MIX: dict[str, float] = {
    "page_view": 24, "action": 10, "session_start": 6, "session_end": 5.5, "feature_used": 4,
    "like": 10, "follow": 2, "comment": 3, "share": 2, "mention": 1, "tag": 1, "reach_out": 1,
    "points_earned": 5, "points_redeemed": 1.5,
    "email_delivered": 5, "email_open": 2.5, "email_click": 1, "ad_impression": 6, "ad_click": 0.6,
    "conversion": 0.4, "brand_search": 0.4, "competitor_search": 0.6, "purchase": 1.2,
    "nps_response": 0.3, "csat_response": 0.3, "ces_response": 0.2, "review": 0.2, "social_mention": 0.5,
    "ticket_opened": 0.3, "ticket_resolved": 0.3, "scan": 0.3,
    "traits": 0.3,           # the account's traits restated (a Segment group call)
}
FEATURES = ("search", "export", "dashboards", "alerts", "api", "sso")
SEGMENTS = ("smb", "mid_market", "enterprise")
# "kiosk" and "watch" are off the default allow-lists: they count as "other"
CHANNELS = ("web", "web", "app", "app", "email", "phone", "chat", "social", "in_store", "kiosk")
DEVICES = ("ios", "ios", "android", "android", "desktop", "watch")
LOCATIONS = ("expo_berlin", "expo_austin", "store_nyc")
PLANS = {"smb": "starter", "mid_market": "growth", "enterprise": "enterprise"}
OWNERS = ("ana", "ben", "chloe", "dev")


@dataclass
class TrafficSettings:
    customers: int = 1000
    accounts: int = 100
    seed: int = 7
    zipf_exponent: float = 1.1
    member_share: float = 0.7         # customers who join the loyalty programme at some point
    leave_share: float = 0.05         # members who later leave
    duplicate_share: float = 0.01
    delayed_share: float = 0.02
    late_share: float = 0.003
    malformed_share: float = 0.003
    max_delay_ms: int = 6 * HOUR      # for DELAYED events; keep below the allowed lateness
    late_by_ms: int = 3 * DAY         # for LATE events; keep above the allowed lateness
    prefix: str = ""                  # prepended to customer/account/event ids (test isolation)
    population: str = "zipf"          # "zipf": activity by rank; "personas": see PERSONAS
    population_seed: int = 7          # who is which persona: fixed apart from `seed`, so a backfill
                                      # and the live traffic after it (another seed) agree


@dataclass(frozen=True)
class Persona:
    """A kind of customer: its share of the population and how active it is (relative rate)."""

    name: str
    share: float
    rate: float
    fades: bool = False      # activity fades out from a random point to nothing, and members leave


PERSONAS = (
    Persona("champion", 0.05, 14.0),
    Persona("engaged", 0.15, 7.0),
    Persona("regular", 0.25, 3.5),
    Persona("casual", 0.25, 1.2),
    Persona("fading", 0.18, 3.0, fades=True),
    Persona("dormant", 0.12, 0.1),
)
FADE_MS = 10 * DAY               # how long a fading customer takes from its usual rate to nothing


@dataclass
class _Customer:
    customer_id: str
    account_id: str
    segment: str
    joins_at: int | None
    leaves_at: int | None
    joined: bool = False
    left: bool = False
    session: str | None = None
    last_ts: int = 0
    rate: float = 1.0                 # relative activity (personas); fades to 0 after fade_from
    fade_from: int | None = None


@dataclass
class TrafficGenerator:
    """Yields messages with event times spread evenly from `start_ms` over `span_ms`."""

    settings: TrafficSettings = field(default_factory=TrafficSettings)

    def messages(self, count: int, start_ms: int, span_ms: int) -> Iterator[Message]:
        s = self.settings
        rng = random.Random(s.seed)
        customers = [self._customer(rng, i, start_ms, span_ms) for i in range(s.customers)]
        personas = s.population == "personas"
        schedule: list[tuple[int, int]] = []      # (when, customer index): joins and leaves that must happen
        if personas:
            for index, customer in enumerate(customers):
                self._cast(customer, index, start_ms, span_ms)
                for at in (customer.joins_at, customer.leaves_at):
                    if at is not None:
                        schedule.append((max(at, start_ms), index))
            heapq.heapify(schedule)
        cumulative = list(itertools.accumulate(1.0 / (rank + 1) ** s.zipf_exponent for rank in range(s.customers)))
        day = None
        types, type_weights = zip(*TYPE_MIX.items())
        type_cumulative = list(itertools.accumulate(type_weights))
        sent: list[bytes] = []
        serial = itertools.count()
        step = span_ms / max(count, 1)

        for i in range(count):
            now = start_ms + int(i * step)
            roll = rng.random()
            if roll < s.malformed_share:
                # keyed by the customer it names, as a real (buggy) producer would key it
                yield Message(f"{s.prefix}c0".encode(), _malformed(rng, s.prefix, next(serial), now), Kind.MALFORMED, now)
                continue
            roll -= s.malformed_share
            if roll < s.duplicate_share and sent:
                original = sent[rng.randrange(len(sent))]
                yield Message(orjson.loads(original)["customer_id"].encode(), original, Kind.DUPLICATE, now)
                continue
            roll -= s.duplicate_share

            if personas and now // DAY != day:       # activity weights change as the fading fade
                day = now // DAY
                cumulative = list(itertools.accumulate(_weight(c, now) for c in customers))
            customer = customers[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
            if schedule and schedule[0][0] <= now and roll >= s.delayed_share + s.late_share:
                customer = customers[heapq.heappop(schedule)[1]]   # a membership change due: on time
            kind, ts = Kind.VALID, now
            if roll < s.delayed_share:
                kind, ts = Kind.DELAYED, now - rng.randrange(1, s.max_delay_ms)
            elif roll < s.delayed_share + s.late_share and customer.last_ts:
                kind, ts = Kind.LATE, customer.last_ts - s.late_by_ms - rng.randrange(1, HOUR)
            ts = max(ts, 0)

            event = self._next_event(rng, customer, ts, types, type_cumulative)
            event["event_id"] = f"{s.prefix}e{next(serial)}"
            customer.last_ts = max(customer.last_ts, event["ts"])   # a join may carry its earlier, original time
            payload = orjson.dumps(event)
            sent.append(payload)
            if len(sent) > 200:  # duplicates are retries and redeliveries of recent messages
                del sent[: len(sent) - 200]
            yield Message(customer.customer_id.encode(), payload, kind, now)

    def _customer(self, rng: random.Random, index: int, start_ms: int, span_ms: int) -> _Customer:
        s = self.settings
        joins_at = leaves_at = None
        if rng.random() < s.member_share:
            # about half joined before the stream starts; the rest join during it
            joins_at = start_ms + int(rng.uniform(-0.5, 0.8) * span_ms)
            if rng.random() < s.leave_share:
                leaves_at = joins_at + int(rng.uniform(0.05, 0.5) * span_ms)
        return _Customer(
            customer_id=f"{s.prefix}c{index}",
            account_id=f"{s.prefix}a{rng.randrange(max(s.accounts, 1))}",
            segment=SEGMENTS[rng.randrange(len(SEGMENTS))],
            joins_at=joins_at,
            leaves_at=leaves_at,
        )

    def _cast(self, c: _Customer, index: int, start_ms: int, span_ms: int) -> None:
        """Give a customer its persona (by its index and the population seed alone)."""
        rng = random.Random(f"{self.settings.population_seed}:{index}")
        roll, persona = rng.random(), PERSONAS[-1]
        for candidate in PERSONAS:
            if roll < candidate.share:
                persona = candidate
                break
            roll -= candidate.share
        c.rate = persona.rate * rng.lognormvariate(0.0, 0.35)      # spread within a persona
        if persona.fades:
            c.fade_from = start_ms + int(rng.uniform(0.1, 0.7) * span_ms)
            if c.joins_at is not None and rng.random() < 0.6:       # most fading members leave
                c.leaves_at = c.fade_from + FADE_MS
        if persona.name == "dormant" and c.joins_at is None:      # dormant members: joined, then quiet
            c.joins_at = start_ms - int(rng.uniform(0.0, 0.5) * span_ms)

    def _next_event(
        self, rng: random.Random, c: _Customer, ts: int, types: tuple[str, ...], cumulative: list[float]
    ) -> dict[str, Any]:
        base: dict[str, Any] = {"customer_id": c.customer_id, "ts": ts, "account_id": c.account_id}
        if c.joins_at is not None and not c.joined and ts >= c.joins_at:
            c.joined = True
            # members from before the stream started arrive with their original join time
            joined_ts = c.joins_at if c.last_ts == 0 else ts
            return {**base, "type": "member_joined", "ts": max(0, joined_ts), "segment": c.segment}
        if c.leaves_at is not None and c.joined and not c.left and ts >= c.leaves_at:
            c.left = True
            return {**base, "type": "member_left"}
        kind = types[bisect.bisect_left(cumulative, rng.random() * cumulative[-1])]
        event: dict[str, Any] = {**base, "type": kind}
        if kind == "session_start":
            c.session = f"s{rng.getrandbits(48):x}"
            event["session_id"] = c.session
        elif kind in ("page_view", "action"):
            if c.session:
                event["session_id"] = c.session
        elif kind == "session_end":
            if c.session is None:
                c.session = f"s{rng.getrandbits(48):x}"
            event["session_id"] = c.session
            event["value"] = round(rng.expovariate(1 / 240), 1)
            c.session = None
        elif kind == "feature_used":
            event["feature"] = FEATURES[min(int(rng.expovariate(0.8)), len(FEATURES) - 1)]
        elif kind == "like" and rng.random() < 0.1:
            event["count"] = rng.randint(2, 50)
        elif kind in ("points_earned", "points_redeemed"):
            event["value"] = rng.choice((10, 25, 50, 100, 250))
        elif kind == "purchase":
            event["value"] = round(rng.lognormvariate(3.6, 0.8), 2)
        elif kind == "nps_response":
            event["value"] = rng.choices(range(11), weights=(1, 1, 1, 1, 2, 3, 4, 8, 14, 16, 12))[0]
        elif kind == "csat_response":
            event["value"] = rng.choices(range(1, 6), weights=(1, 2, 4, 8, 6))[0]
        elif kind == "ces_response":
            event["value"] = rng.choices(range(1, 8), weights=(6, 8, 6, 4, 2, 1, 1))[0]
        elif kind in ("review", "social_mention"):
            event["sentiment"] = rng.choices(("positive", "neutral", "negative"), weights=(6, 3, 2))[0]
        elif kind == "ticket_resolved":
            event["first_contact"] = rng.random() < 0.7
            event["value"] = round(rng.uniform(60, 3600))
        elif kind == "scan":
            if rng.random() < 0.9:
                event["device"] = rng.choice(DEVICES)
            if rng.random() < 0.8:
                event["location"] = rng.choice(LOCATIONS)
        elif kind == "traits":
            bought = rng.choice((5, 10, 25, 50, 100))
            event["traits"] = {"plan": PLANS.get(c.segment, "starter"), "owner": rng.choice(OWNERS),
                               "arr": bought * rng.choice((300, 600, 1200)), "seats_bought": bought,
                               "seats_used": rng.randint(0, bought), "renewal_date": "2027-0%d-01" % rng.randint(1, 9)}
            return event                 # no channel: a group call names none
        if rng.random() < 0.6:
            event["channel"] = rng.choice(CHANNELS)
        return event


def _weight(c: _Customer, now: int) -> float:
    if c.fade_from is None or now <= c.fade_from:
        return c.rate
    return c.rate * max(0.0, 1.0 - (now - c.fade_from) / FADE_MS) + 1e-9     # never all zero


def _malformed(rng: random.Random, prefix: str, serial: int, now: int) -> bytes:
    """One of the ways producers really get it wrong."""
    good = {"event_id": f"{prefix}bad{serial}", "customer_id": f"{prefix}c0", "type": "like", "ts": now}
    choice = rng.randrange(8)
    if choice == 0:
        return orjson.dumps(good)[: rng.randrange(1, 20)]                 # truncated
    if choice == 1:
        return orjson.dumps({k: v for k, v in good.items() if k != "customer_id"})  # missing field
    if choice == 2:
        return orjson.dumps({**good, "type": "teleported"})                # unknown type
    if choice == 3:
        return orjson.dumps({**good, "ts": "yesterday"})                   # bad timestamp
    if choice == 4:
        return orjson.dumps({**good, "type": "nps_response", "value": 11})  # out of range
    if choice == 5:
        return orjson.dumps([good])[:-1] + b"x"                             # not JSON
    if choice == 6:
        return orjson.dumps({**good, "count": "many"})                     # wrong type
    return orjson.dumps({**good, "ts": now + 2 * DAY // SECOND * SECOND})  # far in the future


def batched(messages: Iterable[Message], size: int, shape: str,
            route: Callable[[bytes], int] = lambda key: 0) -> Iterator[tuple[Message, list[Message]]]:
    """Group single-event messages into batch messages (`array` or `ndjson`) of up to `size` events.

    Events are grouped per `route(key)` (the producer passes the key's partition), so one
    customer's events stay in one partition and in order. A malformed message that is not
    a one-line JSON object goes alone: it could not sit inside an array or an NDJSON line.
    Yields (batch message, the messages inside it).
    """
    pending: dict[int, list[Message]] = {}

    def flush(group: list[Message]) -> tuple[Message, list[Message]]:
        value = pack([m.value for m in group], shape)
        key = next((m.key for m in group if m.key), b"")   # a keyed member decides the partition
        return Message(key, value, group[-1].kind, group[-1].at_ms), group

    for message in messages:
        if message.kind is Kind.MALFORMED and not _fits_in_batch(message.value):
            yield message, [message]
            continue
        where = route(message.key)
        group = pending.setdefault(where, [])
        group.append(message)
        if len(group) >= size:
            del pending[where]
            yield flush(group)
    for group in pending.values():
        if group:
            yield flush(group)


def _fits_in_batch(value: bytes) -> bool:
    if b"\n" in value or b"\r" in value:
        return False
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


def as_segment(message: Message, mapping: Mapping[str, TrackMapping]) -> Message:
    """The same message as a Segment-spec `track` message that `mapping` reads back into the same
    event: the name of the first entry mapping to its type, its fields at that entry's paths, its
    time as an RFC 3339 string. A message that is no event object of a mapped type (a malformed
    one) passes unchanged: it stays the same rejection."""
    by_type: dict[str, tuple[str, TrackMapping]] = {}
    for name, entry in mapping.items():
        by_type.setdefault(entry.type, (name, entry))
    try:
        event = orjson.loads(message.value)
    except orjson.JSONDecodeError:
        return message
    if not isinstance(event, dict) or event.get("type") not in (*by_type, "traits"):
        return message
    ts = event.get("ts")
    if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 253402300800000:
        ts = datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if event["type"] == "traits":       # the account's traits: a group call (without an account: identify)
        call = {"type": "group" if "account_id" in event else "identify", "messageId": event.get("event_id"),
                "userId": event.get("customer_id"), "timestamp": ts, "traits": event.get("traits")}
        if "account_id" in event:
            call["groupId"] = event["account_id"]
        return Message(message.key, orjson.dumps(call), message.kind, message.at_ms)
    name, entry = by_type[event["type"]]
    track: dict[str, Any] = {"type": "track", "event": name, "messageId": event.get("event_id"),
                             "userId": event.get("customer_id"), "timestamp": ts, "properties": {}, "context": {}}
    for field_name, path in entry.paths.items():
        if field_name in event:
            place: dict[str, Any] = track
            for step in path[:-1]:
                place = place.setdefault(step, {})
            place[path[-1]] = event[field_name]
    return Message(message.key, orjson.dumps(track), message.kind, message.at_ms)
