"""What one accepted event adds to a customer's state.

Every part of a contribution combines by sum, max or min, so applying the same set
of events in any order gives the same state. The store receives them as the counter
increments of a customer's delta (`scoring.deltas`) and applies them with HINCRBY;
formulas stay in this package.

Counter keys (per time bucket):

    n.<type>                 events of <type>, each weighted by its `count`
    v.<type>                 sum of `value` in thousandths (purchase amount, session
                             seconds, handle seconds, points)
    vn.<type>                events of <type> that carried a `value`
    s.<survey>.<score>       survey histogram, e.g. s.nps_response.9
    sent.<type>.<sentiment>  review / social_mention sentiment counts
    fcr                      tickets resolved at first contact
"""

from __future__ import annotations

from dataclasses import dataclass

from scoring.catalogue import SURVEY_SCALES
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


@dataclass(frozen=True, slots=True)
class SessionDelta:
    session_id: str
    ts_ms: int
    pages: int
    actions: int
    ended: bool


@dataclass(frozen=True, slots=True)
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

    features: tuple[str, ...] = ()
    if t == "feature_used" and event.feature is not None:
        features = (ANY_FEATURE, event.feature) if event.feature in config.kpis.features else (ANY_FEATURE,)

    session = None
    if event.session_id is not None and t in ("session_start", "page_view", "action", "session_end"):
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
