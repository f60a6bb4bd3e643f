"""Alerts a team works (docs/alerts.md, "Working alerts"): the states and what a person may send; hand-worked."""

from __future__ import annotations

import pytest

from scoring.alert_work import Work, WorkError, WorkState, acted, sends, state_of

NOW = 1_800_000_000_000
HOUR = 3_600_000


def test_an_acknowledgement_names_who_and_may_carry_a_note():
    work = acted({"by": " ana ", "note": "called them"}, NOW, snooze=False)
    assert work == Work(WorkState.ACKNOWLEDGED, "ana", "called them", NOW)
    assert Work.from_dict(work.to_dict()) == work


@pytest.mark.parametrize(("body", "field"), [
    ({}, "by"), ({"by": ""}, "by"), ({"by": "x" * 101}, "by"), ({"by": 7}, "by"), ([], "body"),
    ({"by": "ana", "note": 3}, "note"), ({"by": "ana", "note": "x" * 1001}, "note")])
def test_a_bad_acknowledgement_names_the_field(body, field):
    with pytest.raises(WorkError) as caught:
        acted(body, NOW, snooze=False)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


def test_a_snooze_runs_until_a_future_instant_given_in_ms_or_rfc_3339():
    assert acted({"by": "ana", "until": NOW + HOUR}, NOW, snooze=True).until_ms == NOW + HOUR
    assert acted({"by": "ana", "until": "2027-01-15T09:00:00Z"}, NOW, snooze=True).until_ms == NOW + HOUR  # NOW: 08:00Z
    for until in (NOW, NOW - 1, "tomorrow", None, True):
        with pytest.raises(WorkError, match="^until: "):
            acted({"by": "ana", "until": until}, NOW, snooze=True)


def test_an_alert_is_open_until_acted_on_and_resolved_once_its_condition_ends():
    ack = Work(WorkState.ACKNOWLEDGED, "ana", "", NOW)
    snoozed = Work(WorkState.SNOOZED, "ana", "", NOW, until_ms=NOW + HOUR)
    recorded = NOW - HOUR
    assert state_of(recorded, None, True, None, NOW) is WorkState.OPEN
    assert state_of(recorded, None, True, ack, NOW) is WorkState.ACKNOWLEDGED
    assert state_of(recorded, None, True, snoozed, NOW) is WorkState.SNOOZED
    assert state_of(recorded, None, True, snoozed, NOW + HOUR) is WorkState.OPEN          # the snooze ran out
    assert state_of(recorded, None, False, ack, NOW) is WorkState.RESOLVED                # no longer active
    assert state_of(recorded, recorded + 1, True, None, NOW) is WorkState.RESOLVED        # an earlier episode's
    assert state_of(recorded, recorded - 1, True, None, NOW) is WorkState.OPEN            # ended before it began


def test_a_condition_acknowledged_or_snoozed_sends_no_more_alerts_until_the_snooze_ends():
    assert sends(None, NOW)
    assert not sends(Work(WorkState.ACKNOWLEDGED, "ana", "", NOW), NOW + 100 * HOUR)
    snoozed = Work(WorkState.SNOOZED, "ana", "", NOW, until_ms=NOW + HOUR)
    assert not sends(snoozed, NOW + HOUR - 1) and sends(snoozed, NOW + HOUR)
