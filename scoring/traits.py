"""Traits: what a customer is (plan, ARR, seats bought and used, renewal date, owner), beside what
it does (docs/traits.md).

An event may carry `traits`, an object of them; a `traits` event (a Segment `identify` call) is
one that only does. Only the traits the config allows ([traits], each a number, a string or a
date) are kept, so a producer cannot grow a customer's record by inventing keys; others are
ignored. Each trait is kept with the time and id of the event that set it, and the newest event
wins, whatever the order events arrive in. A null sets a trait back to unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Union

from scoring.reasons import EventRejected, Reason
from scoring.timeutil import DAY, MAX_EPOCH_MS, format_rfc3339, parse_rfc3339

NUMBER, STRING, DATE = "number", "string", "date"
TRAIT_KINDS = (NUMBER, STRING, DATE)

TraitValue = Union[int, float, str, None]          # a date as epoch milliseconds; None: unknown
Traits = tuple[tuple[str, TraitValue], ...]


def read_traits(raw: Any, allowed: Mapping[str, str], max_value: float,
                string_problem: Any) -> Traits | None:
    """An event's `traits` object -> the allowed ones, typed; EventRejected naming `traits.<name>`
    when an allowed trait has the wrong type. `string_problem(text)` says what is wrong with a
    string trait (the limits of an id), or None."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise EventRejected(Reason.INVALID_FIELD, "traits must be an object", "traits")
    out = []
    for name in sorted(raw):
        kind = allowed.get(name)
        if kind is not None:
            out.append((name, _typed(name, kind, raw[name], max_value, string_problem)))
    return tuple(out)


def _typed(name: str, kind: str, value: Any, max_value: float, string_problem: Any) -> TraitValue:
    field = f"traits.{name}"
    if value is None:
        return None
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) > max_value:
            raise EventRejected(Reason.INVALID_FIELD, f"{field} must be a number within +-{max_value:g}", field)
        return value
    if kind == STRING:
        if not isinstance(value, str):
            raise EventRejected(Reason.INVALID_FIELD, f"{field} must be a string", field)
        problem = string_problem(value)
        if problem:
            raise EventRejected(Reason.INVALID_FIELD, f"{field} {problem}", field)
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_EPOCH_MS:
        return value
    if isinstance(value, str):
        try:
            ms = parse_rfc3339(value + "T00:00:00Z" if len(value) == 10 else value)
        except (ValueError, OverflowError):
            ms = -1
        if 0 <= ms <= MAX_EPOCH_MS:
            return ms
    raise EventRejected(Reason.INVALID_FIELD, f"{field} must be a date (2027-03-01), an RFC 3339 time or "
                                              "epoch milliseconds", field)


def shown(kind: str, value: TraitValue) -> TraitValue:
    """A trait as the API shows it: a date as RFC 3339 (just the day at midnight UTC)."""
    if kind == DATE and isinstance(value, int):
        text = format_rfc3339(value)
        return text[:10] if value % DAY == 0 else text
    return value
