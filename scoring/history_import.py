"""History imported after go-live (docs/import.md): events older than the live stream allows.

Once a customer is live, an event older than its newest minus `time.allowed_lateness` is
`ts_too_late`: the live stream's order is what makes late data safe. A team that connects its
warehouse's last months after its stream still wants them counted, so an event can say it is
history: `"import": {"id": <the import's id>, "row": <its row>}` (what `engage import` sends).
Such an event skips the lateness gate and is counted into the bucket of its time, as long as any
score can still read that bucket; older ones are `ts_beyond_retention`.

What history cannot rebuild is refused or left out, not guessed: a membership change is
`not_importable` (it would move every KPI of its time), an imported page view or action counts
but rebuilds no session (bounces, sessions), and no alert is sent for the past: an alert it
causes is about now, and one whose condition began long ago is recorded, not sent
(`alerts.max_age`).

Idempotent by import and row: a customer remembers, per import id, the last row it applied
(rows of one customer arrive in order: one partition per customer), so the same file imported
again with the same id changes nothing; the memory of an import is dropped once all its rows
are older than the retention, when they would be refused anyway.
"""

from __future__ import annotations

from scoring.config import Config
from scoring.events import Event
from scoring.reasons import EventRejected, Reason
from scoring.state import CustomerState
from scoring.timeutil import format_duration
from scoring.windows import bucket_of, is_in_future, retained_from_bucket


def is_imported_duplicate(event: Event, state: CustomerState | None, now_ms: int, config: Config) -> bool:
    """True when the import's row (or the event's id) was applied already; raises EventRejected for a
    time in the future or past the retention."""
    assert event.imported is not None
    import_id, row = event.imported
    if state is not None and (event.event_id in state.seen or (state.imports or {}).get(import_id, (-1, 0))[0] >= row):
        return True
    if is_in_future(event.ts_ms, now_ms, config.time):
        raise EventRejected(Reason.TS_IN_FUTURE, f"ts more than {config.time.max_future_skew_ms} ms ahead of now", "ts")
    if bucket_of(event.ts_ms, config.scoring.bucket_ms) < retained_from_bucket(now_ms, config):
        raise EventRejected(Reason.TS_BEYOND_RETENTION, f"ts older than the {format_duration(config.retention_ms)} "
                                                        "any score, KPI or alert reads", "ts")
    return False
