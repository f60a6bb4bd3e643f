"""The built-in event types (docs/events.md) and the per-type field rules.

A custom type (any type given a weight in config) gets :data:`CUSTOM_RULE`:
`count` and an optional non-negative `value`, nothing else required.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Group(StrEnum):
    LOYALTY = "loyalty"
    SOCIAL = "social"
    WEB_APP = "web_app"
    MARKETING = "marketing"
    COMMERCE = "commerce"
    VOICE_OF_CUSTOMER = "voice_of_customer"
    SUPPORT = "support"
    PROFILE = "profile"
    IN_PERSON = "in_person"
    CUSTOM = "custom"


SENTIMENTS = ("positive", "neutral", "negative")


@dataclass(frozen=True, slots=True)
class TypeRule:
    """What one event type requires and allows."""

    group: Group
    value_required: bool = False
    value_min: float | None = 0.0        # None: no lower bound
    value_max: float | None = None
    value_integer: bool = False          # survey answers are whole points on a scale
    session_required: bool = False
    feature_required: bool = False
    sentiment_required: bool = False
    first_contact_required: bool = False
    traits_required: bool = False


_SURVEY = dict(value_required=True, value_integer=True)

BUILTIN_TYPES: dict[str, TypeRule] = {
    # loyalty: membership and points (value = points)
    "member_joined": TypeRule(Group.LOYALTY),
    "member_left": TypeRule(Group.LOYALTY),
    "points_earned": TypeRule(Group.LOYALTY),
    "points_redeemed": TypeRule(Group.LOYALTY),
    # social
    "follow": TypeRule(Group.SOCIAL),
    "like": TypeRule(Group.SOCIAL),
    "comment": TypeRule(Group.SOCIAL),
    "share": TypeRule(Group.SOCIAL),
    "mention": TypeRule(Group.SOCIAL),
    "tag": TypeRule(Group.SOCIAL),
    "reach_out": TypeRule(Group.SOCIAL),
    # web / app
    "session_start": TypeRule(Group.WEB_APP, session_required=True),
    "page_view": TypeRule(Group.WEB_APP),
    "action": TypeRule(Group.WEB_APP),
    "session_end": TypeRule(Group.WEB_APP, session_required=True, value_required=True),
    "feature_used": TypeRule(Group.WEB_APP, feature_required=True),
    # marketing
    "email_delivered": TypeRule(Group.MARKETING),
    "email_open": TypeRule(Group.MARKETING),
    "email_click": TypeRule(Group.MARKETING),
    "ad_impression": TypeRule(Group.MARKETING),
    "ad_click": TypeRule(Group.MARKETING),
    "conversion": TypeRule(Group.MARKETING),
    # searches for our brand and for a competitor's, by the customer (share of voice, docs/scores-and-kpis.md metric #27)
    "brand_search": TypeRule(Group.MARKETING),
    "competitor_search": TypeRule(Group.MARKETING),
    # commerce (value = amount; refunds are not purchases)
    "purchase": TypeRule(Group.COMMERCE, value_required=True),
    # voice of customer
    "nps_response": TypeRule(Group.VOICE_OF_CUSTOMER, value_min=0, value_max=10, **_SURVEY),
    "csat_response": TypeRule(Group.VOICE_OF_CUSTOMER, value_min=1, value_max=5, **_SURVEY),
    "ces_response": TypeRule(Group.VOICE_OF_CUSTOMER, value_min=1, value_max=7, **_SURVEY),
    "review": TypeRule(Group.VOICE_OF_CUSTOMER, sentiment_required=True),
    "social_mention": TypeRule(Group.VOICE_OF_CUSTOMER, sentiment_required=True),
    # support (ticket_resolved: value = handle seconds)
    "ticket_opened": TypeRule(Group.SUPPORT),
    "ticket_resolved": TypeRule(Group.SUPPORT, first_contact_required=True),
    # in person: a digital business card scanned (docs/scores-and-kpis.md metric #13; `device` and `location` optional)
    "scan": TypeRule(Group.IN_PERSON),
    # profile: what the customer is, not what it does (`traits` required; a Segment identify call)
    "traits": TypeRule(Group.PROFILE, traits_required=True),
}

CUSTOM_RULE = TypeRule(Group.CUSTOM)

MEMBERSHIP_TYPES = frozenset({"member_joined", "member_left"})

# Events a customer does not initiate: they never make a customer "active", and they are not
# "customer interactions" (the denominator of the brand search rate and the channel shares).
# A competitor search is the customer's, but not an interaction with us.
PASSIVE_TYPES = frozenset({"member_joined", "member_left", "email_delivered", "ad_impression", "competitor_search",
                           "traits"})

SURVEY_SCALES = {"nps_response": (0, 10), "csat_response": (1, 5), "ces_response": (1, 7)}
