"""History imported after go-live (docs/import.md): a stream, then its own history imported, equals
the core's computation of the whole; idempotent by import and row; what history cannot hold."""

from __future__ import annotations

import orjson
import pytest

from devstack.traffic import TrafficGenerator, TrafficSettings
from scoring.business import business_kpis
from scoring.engine import Outcome, Scorer
from scoring.history import customer_history
from scoring.reasons import Reason
from scoring.timeutil import DAY, HOUR
from tests.builders import CONFIG, NOW, ev


def history(event: dict, row: int, import_id: str = "warehouse-2026-11") -> dict:
    return {**event, "import": {"id": import_id, "row": row}}


def importable_stream() -> list[dict]:
    """Three weeks of generated traffic, without what history cannot rebuild (membership changes;
    session ids: a session is rebuilt only live), in event-time order."""
    traffic = TrafficGenerator(TrafficSettings(customers=80, accounts=8, seed=5, malformed_share=0, late_share=0,
                                               duplicate_share=0))
    events = []
    for message in traffic.messages(6000, NOW - 21 * DAY, 21 * DAY - HOUR):
        event = orjson.loads(message.value)
        if event["type"] in ("member_joined", "member_left", "session_start", "session_end"):
            continue
        event.pop("session_id", None)
        events.append(event)
    return sorted(events, key=lambda e: e["ts"])


def test_a_stream_then_its_own_history_imported_equals_the_whole():
    events = importable_stream()
    cut = NOW - 4 * DAY
    recent, older = [e for e in events if e["ts"] >= cut], [e for e in events if e["ts"] < cut]
    assert len(recent) > 500 and len(older) > 3000
    whole = Scorer(CONFIG)
    for event in events:
        assert whole.process(dict(event), NOW).outcome is Outcome.ACCEPTED
    live = Scorer(CONFIG)
    for event in recent:
        live.process(dict(event), NOW)
    late = [live.process(dict(e), NOW).reason for e in older[:50]]
    assert set(late) == {Reason.TS_TOO_LATE}                       # without the import mark: too late
    results = [live.process(history(e, row), NOW) for row, e in enumerate(older, 1)]
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    assert sorted(live.customers) == sorted(whole.customers)
    for cid in whole.customers:
        assert live.customer(cid, NOW) == whole.customer(cid, NOW), cid
        assert customer_history(live.customers[cid], NOW, CONFIG) == customer_history(whole.customers[cid], NOW, CONFIG)
    assert business_kpis(live.customers.values(), NOW, CONFIG) == business_kpis(whole.customers.values(), NOW, CONFIG)
    assert [c.customer_id for c in live.leaderboard(NOW, limit=20)] == [c.customer_id for c in whole.leaderboard(NOW, limit=20)]


def test_the_same_import_again_changes_nothing_and_another_import_of_the_same_rows_counts_again():
    scorer = Scorer(CONFIG)
    scorer.process(ev("c", "like", NOW - HOUR), NOW)
    old = [ev("c", "like", NOW - (10 + i) * DAY, count=2) for i in range(3)]
    assert [scorer.process(history(e, row), NOW).outcome for row, e in enumerate(old, 1)] == [Outcome.ACCEPTED] * 3
    assert scorer.customer("c", NOW).counts == {"like": 7}
    again = [scorer.process(history(e, row), NOW).outcome for row, e in enumerate(old, 1)]
    assert again == [Outcome.DUPLICATE] * 3 and scorer.customer("c", NOW).counts == {"like": 7}
    assert scorer.customers["c"].imports == {"warehouse-2026-11": (3, NOW - 10 * DAY)}
    other = [scorer.process(history(e, row, "second"), NOW).outcome for row, e in enumerate(old, 1)]
    assert other == [Outcome.ACCEPTED] * 3 and scorer.customer("c", NOW).counts == {"like": 13}


def test_what_history_cannot_hold_is_refused_or_left_out():
    scorer = Scorer(CONFIG)
    scorer.process(ev("c", "like", NOW - HOUR), NOW)
    joined = scorer.process(history(ev("c", "member_joined", NOW - 9 * DAY), 1), NOW)
    assert (joined.reason, joined.field) == (Reason.NOT_IMPORTABLE, "type")
    ancient = scorer.process(history(ev("c", "like", NOW - 200 * DAY), 2), NOW)
    assert ancient.reason is Reason.TS_BEYOND_RETENTION
    ahead = scorer.process(history(ev("c", "like", NOW + DAY), 3), NOW)
    assert ahead.reason is Reason.TS_IN_FUTURE
    # a page view of an old session counts, and rebuilds no session (no bounce, no session count)
    visit = scorer.process(history(ev("c", "page_view", NOW - 9 * DAY, session_id="s1"), 4), NOW)
    assert visit.outcome is Outcome.ACCEPTED and scorer.customers["c"].sessions == {}
    assert scorer.customer("c", NOW).counts == {"like": 1, "page_view": 1}


@pytest.mark.parametrize(("mark", "field"), [({"id": "x"}, "import"), ({"id": "", "row": 1}, "import.id"),
                                             ({"id": "x", "row": -1}, "import"), ("x", "import")])
def test_a_bad_import_mark_is_rejected_naming_it(mark, field):
    result = Scorer(CONFIG).process({**ev("c", "like", NOW - HOUR), "import": mark}, NOW)
    assert (result.reason, result.field) == (Reason.INVALID_FIELD, field)


def test_an_import_is_forgotten_once_all_its_rows_left_the_retention():
    scorer = Scorer(CONFIG)
    scorer.process(history(ev("c", "like", NOW - 20 * DAY), 1), NOW)
    assert "warehouse-2026-11" in scorer.customers["c"].imports
    later = NOW - 20 * DAY + CONFIG.retention_ms + DAY
    scorer.sweep(later)
    assert scorer.customers["c"].imports is None
