"""Segment-spec messages read as this product's events (docs/bring-your-own-events.md).

Most teams' behavioural data already flows as Segment-spec messages (Segment, RudderStack,
Jitsu, Snowplow's Segment adapter). A JSON object with a `messageId`, no `event_id` and a
Segment call as its `type` is one; it is translated into the product's own event form here and
then validated like any event (`scoring.events`), so every rule, limit and rejection reason is
the same, and a rejection names the Segment field to blame.

A `track` call is an event: `messageId` its id, `userId` (else `anonymousId`) the customer,
`timestamp` (else `originalTimestamp`) the time; `event` is mapped to a type by the config's
`[mapping]` table, and each of the type's fields is read from a path in the message (by default
`properties.<field>`, and the account from `context.groupId`). A track event the table does not
name is rejected as `unmapped_event`.

An `identify` call is a `traits` event: its `traits` (those the config allows, scoring.traits).
A `group` call is one too, with `groupId` as the customer's account: it makes the user a member
of the account, and the group's traits are kept on that user (a user's plan and ARR are its
account's). The other calls (`page`, `screen`, `alias`) are rejected as `unsupported_message`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scoring.reasons import EventRejected, Reason

CALLS = frozenset({"track", "identify", "group", "page", "screen", "alias"})
TRAIT_CALLS = frozenset({"identify", "group"})
TRAITS_TYPE = "traits"     # the event type an identify or group call is (scoring.catalogue)
# the event fields a mapping can read from a path of the message, and where by default
FIELDS = ("value", "count", "session_id", "feature", "segment", "sentiment", "first_contact", "channel",
          "device", "location", "account_id")
DEFAULT_PATHS: Mapping[str, str] = {**{name: f"properties.{name}" for name in FIELDS},
                                    "account_id": "context.groupId"}


@dataclass(frozen=True, slots=True)
class TrackMapping:
    """The event type of one `track` event name, and the path each of its fields is read from."""

    type: str
    paths: Mapping[str, tuple[str, ...]]     # event field -> path in the message, split at its dots


def is_segment_message(obj: Mapping[str, Any]) -> bool:
    """A Segment-spec message rather than one of this product's events."""
    return "messageId" in obj and "event_id" not in obj and obj.get("type") in CALLS


def translate(obj: Mapping[str, Any], mapping: Mapping[str, TrackMapping]) -> tuple[dict[str, Any], dict[str, str]]:
    """The event a Segment `track` message says, in this product's form, and for each of its
    fields the Segment field it came from (for rejections); EventRejected when it says none."""
    call = obj["type"]
    if call in TRAIT_CALLS:
        return _traits_event(obj, call)
    if call != "track":
        raise EventRejected(Reason.UNSUPPORTED_MESSAGE, f"Segment {call} messages are not read: only track, "
                                                        "identify and group messages are", "type")
    name = obj.get("event")
    if name is None:
        raise EventRejected(Reason.MISSING_FIELD, "event is required in a track message", "event")
    if not isinstance(name, str):
        raise EventRejected(Reason.INVALID_FIELD, "event must be a string", "event")
    found = mapping.get(name)
    if found is None:
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise EventRejected(Reason.UNMAPPED_EVENT, f"no [mapping] entry for the track event {shown!r}", "event",
                            subject=name)
    event, sources = _common(obj, found.type, "event")
    for field, path in found.paths.items():
        value = _at(obj, path)
        sources[field] = ".".join(path)
        if value is not None:
            event[field] = value
    return event, sources


def _common(obj: Mapping[str, Any], type_name: str, type_source: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The id, customer, type and time every call gives, and the Segment field each came from."""
    customer = "userId" if obj.get("userId") is not None else "anonymousId"
    stamp = "timestamp" if obj.get("timestamp") is not None else "originalTimestamp"
    event: dict[str, Any] = {"event_id": obj.get("messageId"), "customer_id": obj.get(customer),
                             "type": type_name, "ts": obj.get(stamp)}
    return event, {"event_id": "messageId", "customer_id": customer, "type": type_source, "ts": stamp}


def _traits_event(obj: Mapping[str, Any], call: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An identify or group call as a `traits` event (a group call: with its group as the account)."""
    event, sources = _common(obj, TRAITS_TYPE, "type")
    traits = obj.get("traits")
    event["traits"] = {} if traits is None else traits
    sources["traits"] = "traits"
    if call == "group":
        event["account_id"] = obj.get("groupId")
        sources["account_id"] = "groupId"
        if event["account_id"] is None:
            raise EventRejected(Reason.MISSING_FIELD, "groupId is required in a group message", "groupId")
    return event, sources


def _at(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` (None when any step is missing or not an object)."""
    value: Any = obj
    for step in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value
