"""The edge's clock. The scoring core never reads a clock: the edge passes this in."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return time.time_ns() // 1_000_000
