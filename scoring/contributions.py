"""What one accepted event adds to a customer's state.

Every part of a contribution combines by sum, max or min, so applying the same set
of events in any order gives the same state. The store receives them as the counter
increments of a customer's delta (`scoring.deltas`): it adds them to the shards' per-bucket
totals with HINCRBY and stores each customer's counters in its record; formulas stay in
this package.

Counter keys (per time bucket):

    n.<type>                 events of <type>, each weighted by its `count`
    v.<type>                 sum of `value` in thousandths (purchase amount, session
                             seconds, handle seconds, points)
    vn.<type>                events of <type> that carried a `value`
    s.<survey>.<score>       survey histogram, e.g. s.nps_response.9
    sent.<type>.<sentiment>  review / social_mention sentiment counts
    fcr                      tickets resolved at first contact
    ch.<channel>             customer interactions on a channel (events naming one; not
                             the passive types)
    cs.<channel>.<score>     CSAT histogram of the answers given on a channel
    scan.device.<device>     scans by device type
    scan.location.<place>    scans by location

Channel, device and location become counter keys (and metric labels) only from the
configured allow-lists ([kpis] channels, scan_devices, scan_locations): any other value
counts as "other", so a producer cannot grow the key space. A scan without a device or
location counts as "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.catalogue import PASSIVE_TYPES, SURVEY_SCALES
from scoring.config import Config
from scoring.events import VALUE_SCALE, Event
from scoring.windows import bucket_of

JOIN, LEAVE = 0, 1  # at equal timestamps a leave sorts after a join
ANY_FEATURE = "*"
SENTIMENT_TYPES = frozenset({"review", "social_mention"})


def count_key(type_name: str) -> str:
    return f"n.{type_name}"


def value_key(type_name: str) -> str:
    return f"v.{type_name}"


def valued_key(type_name: str) -> str:
    return f"vn.{type_name}"


def survey_key(type_name: str, score: int) -> str:
    return f"s.{type_name}.{score}"


def sentiment_key(type_name: str, sentiment: str) -> str:
    return f"sent.{type_name}.{sentiment}"


FCR_KEY = "fcr"
OTHER, UNKNOWN = "other", "unknown"


def label_of(value: str | None, allowed: tuple[str, ...]) -> str:
    """A free-text field as a bounded label: itself if allowed, else "other"; absent: "unknown"."""
    if value is None:
        return UNKNOWN
    return value if value in allowed else OTHER


def labels(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Every label `label_of` can give for an allow-list (what the KPIs report, in order)."""
    return (*allowed, OTHER, UNKNOWN)


def channel_key(channel: str) -> str:
    return f"ch.{channel}"


def channel_survey_key(channel: str, score: int) -> str:
    return f"cs.{channel}.{score}"


def scan_device_key(device: str) -> str:
    return f"scan.device.{device}"


def scan_location_key(location: str) -> str:
    return f"scan.location.{location}"


@dataclass(slots=True)
class SessionDelta:
    session_id: str
    ts_ms: int
    pages: int
    actions: int
    ended: bool


@dataclass(slots=True)
class Contribution:
    bucket: int
    counters: tuple[tuple[str, int], ...]
    active: bool                      # an activity type: DAU/WAU/MAU, inactivity, activation
    aer_active: bool                  # an AER activity type (points earned/redeemed)
    features: tuple[str, ...]         # feature keys whose last-use time this event sets
    membership: int | None            # JOIN, LEAVE or None
    session: SessionDelta | None


def contribution(event: Event, config: Config) -> Contribution:
    t = event.type
    n = event.count
    counters: list[tuple[str, int]] = [(count_key(t), n)]
    if event.value_milli is not None:
        counters.append((value_key(t), event.value_milli))
        counters.append((valued_key(t), 1))
        if t in SURVEY_SCALES:
            counters.append((survey_key(t, event.value_milli // VALUE_SCALE), n))
    if event.sentiment is not None and t in SENTIMENT_TYPES:
        counters.append((sentiment_key(t, event.sentiment), n))
    if t == "ticket_resolved" and event.first_contact:
        counters.append((FCR_KEY, n))
    kpis = config.kpis
    if event.channel is not None and t not in PASSIVE_TYPES:
        channel = label_of(event.channel, kpis.channels)
        counters.append((channel_key(channel), n))
        if t == "csat_response" and event.value_milli is not None:
            counters.append((channel_survey_key(channel, event.value_milli // VALUE_SCALE), n))
    if t == "scan":
        counters.append((scan_device_key(label_of(event.device, kpis.scan_devices)), n))
        counters.append((scan_location_key(label_of(event.location, kpis.scan_locations)), n))

    features: tuple[str, ...] = ()
    if t == "feature_used" and event.feature is not None:
        features = (ANY_FEATURE, event.feature) if event.feature in config.kpis.features else (ANY_FEATURE,)

    session = None
    if event.session_id is not None and t in ("session_start", "page_view", "action", "session_end") \
            and event.imported is None:     # history: counted, but its sessions are not rebuilt
        session = SessionDelta(
            session_id=event.session_id,
            ts_ms=event.ts_ms,
            pages=n if t == "page_view" else 0,
            actions=n if t == "action" else 0,
            ended=t == "session_end",
        )

    membership = JOIN if t == "member_joined" else LEAVE if t == "member_left" else None
    return Contribution(
        bucket=bucket_of(event.ts_ms, config.scoring.bucket_ms),
        counters=tuple(counters),
        active=t in config.activity_types,
        aer_active=t in config.aer.activity_types,
        features=features,
        membership=membership,
        session=session,
    )
