"""Durations and timestamps. Everything internal is integer epoch milliseconds (UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

MS = 1
SECOND = 1000 * MS
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_UNITS = {"ms": MS, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*\Z", re.ASCII)

# RFC 3339 section 5.6 (date-time), strictly: a time-offset is mandatory. ASCII digits
# only, and \Z rather than $ (which would also match before a trailing newline).
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)

# Epoch-ms values accepted for `ts`: 1970-01-01 .. 9999-12-31.
MAX_EPOCH_MS = 253402300799999


def parse_duration(text: str | int) -> int:
    """'30d' / '1h' / '500ms' -> milliseconds. A bare integer is taken as seconds."""
    if isinstance(text, bool):
        raise ValueError("must be a duration such as '30d', '1h', '5m', '10s' or '500ms'")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("must not be negative")
        return text * SECOND
    if not isinstance(text, str):
        raise ValueError("must be a duration such as '30d', '1h', '5m', '10s' or '500ms'")
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"must be a duration such as '30d', '1h', '5m', '10s' or '500ms' (got {text!r})")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(ms: int) -> str:
    """The shortest exact unit form, inverse of :func:`parse_duration`."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_rfc3339(text: str) -> int:
    """RFC 3339 date-time with offset -> epoch ms. Raises ValueError otherwise.

    Fractions finer than a millisecond are truncated (toward the past), so the same
    instant always lands in the same bucket.
    """
    match = _RFC3339.match(text)
    if not match:
        raise ValueError("not an RFC 3339 date-time with offset")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    if second == 60:  # leap second: RFC 3339 allows it; fold onto the next instant's previous ms
        second = 59
        fraction = ".999"
    millis = int((fraction[1:] + "00")[:3]) if fraction else 0
    if offset in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        off_h, off_m = int(offset[1:3]), int(offset[4:6])
        if off_h > 23 or off_m > 59:
            raise ValueError("offset out of range")
        tz = timezone(sign * timedelta(hours=off_h, minutes=off_m))
    moment = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    epoch_s = int(moment.timestamp())
    # timestamp() is exact for whole seconds; add milliseconds as integers.
    return epoch_s * 1000 + millis


def format_rfc3339(ms: int) -> str:
    """Epoch ms -> '2026-11-23T12:00:00.000Z'."""
    moment = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
