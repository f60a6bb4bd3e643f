"""The garbage collector kept out of the way of a long-running process.

The scoring path allocates many short-lived objects (decoded events, states, deltas) and
almost no reference cycles, so CPython's default young-generation threshold (700
allocations) ran a collection about every 30 events, most of them scanning objects that
were about to be freed anyway: 23-24 % of the core's time went to the collector (measured
with `gc.callbacks` over the benchmark's core mode; docs/performance.md). After start-up
everything loaded so far (modules, config, the Faust app) is frozen out of the collector's
scans, and the young generation is collected every `YOUNG_THRESHOLD` allocations: about 4 %
of the time, with cycles still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000      # allocations between young collections (CPython's default: 700)
OLDER_THRESHOLDS = (50, 100)  # young collections per middle one, middle ones per full one


def quiet_collector() -> None:
    """Freeze what start-up built and collect the young generation less often. Call once, late in
    start-up: objects made before are never scanned again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
