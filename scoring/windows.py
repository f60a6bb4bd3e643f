"""Event-time buckets, windows, allowed lateness, future skew and decay.

Windows are whole buckets: a window of N buckets "as of" time T covers the bucket
holding T and the N-1 before it (so with 1-day buckets DAU is the current UTC day and
a 30-day window is today plus the 29 previous days). Buckets after T (events accepted
within the future-skew limit) count as well.

Lateness is measured against the customer's *watermark*, the newest event time
accepted for that customer. Every event of a customer lives in one Kafka partition
in a fixed order, so the watermark, and hence accept/reject, is the same in live
processing, after a rebalance and in a replay.
"""

from __future__ import annotations

from scoring.config import Config, TimeConfig


def bucket_of(ts_ms: int, bucket_ms: int) -> int:
    return ts_ms // bucket_ms


def bucket_start(bucket: int, bucket_ms: int) -> int:
    return bucket * bucket_ms


def window_start_bucket(as_of_ms: int, window_ms: int, bucket_ms: int) -> int:
    """First bucket inside a window of `window_ms` ending at `as_of_ms`."""
    return bucket_of(as_of_ms, bucket_ms) - window_ms // bucket_ms + 1


def window_start_ms(as_of_ms: int, window_ms: int, bucket_ms: int) -> int:
    return bucket_start(window_start_bucket(as_of_ms, window_ms, bucket_ms), bucket_ms)


def is_in_future(ts_ms: int, now_ms: int, time: TimeConfig) -> bool:
    """True when the event is further ahead of the processing clock than allowed."""
    return ts_ms > now_ms + time.max_future_skew_ms


def is_too_late(ts_ms: int, watermark_ms: int | None, time: TimeConfig) -> bool:
    """True when the event is older than the customer's watermark minus the allowed lateness."""
    return watermark_ms is not None and ts_ms < watermark_ms - time.allowed_lateness_ms


def retained_from_bucket(now_ms: int, config: Config) -> int:
    """Oldest bucket any score, KPI or alert can still read; older ones may be dropped."""
    return bucket_of(now_ms - config.retention_ms, config.scoring.bucket_ms) + 1


def bucket_age(bucket: int, as_of_ms: int, bucket_ms: int) -> int:
    """Age of a bucket's events for decay, taking the bucket's midpoint as their time."""
    return max(as_of_ms - (bucket * bucket_ms + bucket_ms // 2), 0)
