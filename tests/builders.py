"""Builders shared by every tier of tests: the default config, instants and events.

One home for them, so that a test module states only what differs from the defaults.
"""

from __future__ import annotations

import itertools
from typing import Any

from scoring.config import load_config
from scoring.timeutil import DAY, HOUR

CONFIG = load_config()                           # the shipped defaults, loaded once (Config is frozen)

DAY0 = (1_790_000_000_000 // DAY) * DAY          # a UTC midnight
NOW = DAY0 + 40 * DAY + 12 * HOUR                # noon, 40 days later

_ids = itertools.count()


def ev(customer: str, type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    """A raw event; `fields` add to it or replace the generated `event_id`."""
    return {"event_id": f"t{next(_ids)}", "customer_id": customer, "type": type_, "ts": ts, **fields}
