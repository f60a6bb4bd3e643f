"""Small builders shared by the scoring tests."""

from __future__ import annotations

import itertools
from typing import Any

from scoring.timeutil import DAY, HOUR

DAY0 = (1_790_000_000_000 // DAY) * DAY          # a UTC midnight
NOW = DAY0 + 40 * DAY + 12 * HOUR                # noon, 40 days later

_ids = itertools.count()


def ev(customer: str, type_: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"t{next(_ids)}", "customer_id": customer, "type": type_, "ts": ts, **fields}
