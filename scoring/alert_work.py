"""Alerts a team works: each customer alert is open, acknowledged, snoozed or resolved.

The rules here; the edge stores what they read (streams.state.alert_work). A team acts on a
customer's *condition* (its rule's episode), not on one message: acknowledging or snoozing an
alert covers the alerts its rule raises for that customer until the condition ends. The
condition ends when the rule is no longer active in the customer's standing (the at-risk list
drops it); then every alert of that episode is resolved, and the team's note goes with it: a
condition that comes back is a new episode, open again.

* open: nobody has acted on it;
* acknowledged (by, note): someone owns it; later alerts of the episode are recorded, not sent;
* snoozed until an instant (by, note): not sent until then; after it, open again;
* resolved: its condition ended after it was raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from scoring.timeutil import parse_rfc3339


class WorkState(str, Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SNOOZED = "snoozed"
    RESOLVED = "resolved"


MAX_BY = 100          # characters of who acted
MAX_NOTE = 1000       # characters of a note


class WorkError(ValueError):
    """A bad acknowledgement or snooze: `field` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Work:
    """What a person did about a customer's condition (one rule)."""

    state: WorkState            # ACKNOWLEDGED or SNOOZED
    by: str
    note: str
    at_ms: int                  # when it was done
    until_ms: int | None = None  # snoozed until

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state.value, "by": self.by, "note": self.note, "at": self.at_ms,
                "until": self.until_ms}

    @classmethod
    def from_dict(cls, raw: dict) -> Work:
        return cls(WorkState(raw["state"]), raw["by"], raw["note"], int(raw["at"]),
                   None if raw.get("until") is None else int(raw["until"]))


def acted(body: object, now_ms: int, snooze: bool) -> Work:
    """An acknowledgement (or a snooze) from a request body: {"by", "note"?, "until" (a snooze)}."""
    if not isinstance(body, dict):
        raise WorkError("body", "must be a JSON object")
    by, note = body.get("by"), body.get("note", "")
    if not isinstance(by, str) or not by.strip() or len(by) > MAX_BY:
        raise WorkError("by", f"who acts: a non-empty string of at most {MAX_BY} characters")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise WorkError("note", f"a string of at most {MAX_NOTE} characters")
    if not snooze:
        return Work(WorkState.ACKNOWLEDGED, by.strip(), note, now_ms)
    until = body.get("until")
    try:
        until_ms = until if isinstance(until, int) and not isinstance(until, bool) else parse_rfc3339(until)
    except (TypeError, ValueError):
        raise WorkError("until", "an instant: epoch milliseconds or RFC 3339") from None
    if until_ms <= now_ms:
        raise WorkError("until", "must be in the future")
    return Work(WorkState.SNOOZED, by.strip(), note, now_ms, until_ms)


def state_of(recorded_ms: int, resolved_ms: int | None, active: bool, work: Work | None, now_ms: int) -> WorkState:
    """An alert's state now: resolved once its condition is no longer active, or ended after the
    alert was recorded (a later episode is another alert's); else what was done about its
    condition (a snooze that ran out is open again)."""
    if not active or (resolved_ms is not None and resolved_ms >= recorded_ms):
        return WorkState.RESOLVED
    if work is None or (work.state is WorkState.SNOOZED and (work.until_ms or 0) <= now_ms):
        return WorkState.OPEN
    return work.state


def sends(work: Work | None, now_ms: int) -> bool:
    """Whether a new alert of a condition is sent: not while it is acknowledged or snoozed. (`work`
    is what was done in the current episode; the edge forgets it when the condition ends.)"""
    return state_of(0, None, True, work, now_ms) is WorkState.OPEN
