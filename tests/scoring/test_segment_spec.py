"""Segment-spec input (`scoring.segment_spec`): track messages read through [mapping] as the same
events, the other calls and unmapped names rejected with their reasons, the mapping's config
validated key by key; and a whole generated stream scored the same in both formats."""

from __future__ import annotations

import orjson
import pytest

from devstack.traffic import TrafficGenerator, TrafficSettings, as_segment
from scoring.config import ConfigError, build_config, config_mapping, default_mapping, load_config
from scoring.engine import Outcome, Scorer
from scoring.events import validate_event
from scoring.messages import pack, unpack
from scoring.reasons import EventRejected, Reason
from scoring.timeutil import DAY
from tests.builders import CONFIG, NOW


def track(**fields) -> dict:  # type: ignore[no-untyped-def]
    message = {"type": "track", "messageId": "m-1", "userId": "u-1", "event": "Order Completed",
               "timestamp": "2026-11-20T10:00:00.250Z", "properties": {"revenue": 42.5},
               "context": {"groupId": "acme"}}
    message.update(fields)
    return message


def rejection(obj: dict, config=CONFIG) -> EventRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(EventRejected) as caught:
        validate_event(obj, config)
    return caught.value


def test_a_track_message_is_the_event_its_mapping_names_with_fields_read_from_their_paths():
    event = validate_event(track(), CONFIG)
    assert (event.event_id, event.customer_id, event.type, event.ts_ms, event.account_id, event.value) == (
        "m-1", "u-1", "purchase", 1_795_168_800_250, "acme", 42.5)


def test_the_anonymous_id_and_the_original_timestamp_stand_in_when_the_user_id_and_timestamp_are_missing():
    event = validate_event(track(userId=None, anonymousId="anon-7", timestamp=None,
                                 originalTimestamp="2026-11-20T11:00:00+01:00"), CONFIG)
    assert (event.customer_id, event.ts_ms) == ("anon-7", 1_795_168_800_000)


def test_default_paths_read_properties_named_like_the_fields_and_a_config_path_overrides_one():
    feature = validate_event(track(event="Feature Used", properties={"feature": "export", "channel": "app"}), CONFIG)
    assert (feature.type, feature.feature, feature.channel) == ("feature_used", "export", "app")
    config = load_config(overrides={"mapping": {"Report Exported": {"type": "feature_used",
                                                                    "feature": "properties.report.kind"}}})
    event = validate_event(track(event="Report Exported", properties={"report": {"kind": "pdf"}}), config)
    assert (event.type, event.feature) == ("feature_used", "pdf")
    assert "Order Completed" in config.mapping        # a config's entries add to the shipped ones


def test_a_track_event_no_mapping_names_is_rejected_as_unmapped_naming_it():
    rejected = rejection(track(event="Coupon Applied"))
    assert (rejected.reason, rejected.field, rejected.subject) == (Reason.UNMAPPED_EVENT, "event", "Coupon Applied")
    assert "Coupon Applied" in rejected.detail


@pytest.mark.parametrize("call", ["page", "screen", "alias"])
def test_segment_calls_that_are_no_events_are_rejected_as_unsupported(call):
    rejected = rejection({"type": call, "messageId": "m-2", "userId": "u-1", "traits": {"plan": "pro"}})
    assert (rejected.reason, rejected.field) == (Reason.UNSUPPORTED_MESSAGE, "type")
    assert call in rejected.detail


def test_a_rejection_names_the_segment_field_to_blame():
    bad_value = rejection(track(properties={"revenue": "lots"}))
    assert (bad_value.reason, bad_value.field) == (Reason.INVALID_FIELD, "properties.revenue")
    assert "read from properties.revenue" in bad_value.detail
    no_value = rejection(track(properties={}))
    assert (no_value.reason, no_value.field) == (Reason.MISSING_FIELD, "properties.revenue")
    assert rejection(track(userId=None)).field == "anonymousId"
    assert rejection(track(timestamp="yesterday")).field == "timestamp"
    assert rejection(track(messageId=None)).field == "messageId"
    out_of_range = rejection(track(event="NPS Survey Answered", properties={"score": 11}))
    assert (out_of_range.reason, out_of_range.field) == (Reason.OUT_OF_RANGE, "properties.score")


def test_an_own_event_with_a_message_id_is_still_an_own_event():
    own = {"event_id": "e1", "messageId": "m", "customer_id": "c1", "type": "like", "ts": NOW - 1000}
    assert validate_event(own, CONFIG).event_id == "e1"


@pytest.mark.parametrize("entry, key", [
    ({"type": "nope"}, 'mapping."X".type'),
    ({"type": "purchase", "revenue": "properties.revenue"}, 'mapping."X".revenue'),
    ({"type": "purchase", "value": "properties..revenue"}, 'mapping."X".value'),
    ({"type": "purchase", "value": 7}, 'mapping."X".value'),
    (3, 'mapping."X"'),
])
def test_a_bad_mapping_entry_stops_the_config_naming_its_key(entry, key):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"mapping": {"X": entry}})
    assert caught.value.key == key


def test_the_mapping_round_trips_through_the_config_as_written():
    config = load_config(overrides={"mapping": {"Plan Upgraded": {"type": "conversion", "value": "properties.mrr"},
                                                "Liked": "like"}})
    shown = config_mapping(config)
    assert shown["mapping"]["Liked"] == "like"
    assert shown["mapping"]["Plan Upgraded"] == {"type": "conversion", "value": "properties.mrr"}
    assert shown["mapping"]["Order Completed"] == {"type": "purchase", "value": "properties.revenue"}
    assert build_config({**default_mapping(), **shown}) == config


def test_every_built_in_type_has_a_shipped_name():
    from scoring.catalogue import BUILTIN_TYPES

    assert {entry.type for entry in CONFIG.mapping.values()} == set(BUILTIN_TYPES) - {"traits"}   # identify, group


def test_a_generated_stream_scores_the_same_in_both_formats_and_in_batch_messages():
    """Every event, duplicate, late and malformed message of a generated stream, sent once in the
    product's format and once as Segment track messages: the same outcomes and reasons, the same
    customers' state, KPIs and alerts; and the stream's well-formed Segment messages in JSON arrays
    the same as one by one."""
    messages = list(TrafficGenerator(TrafficSettings(customers=80, accounts=10, seed=5, malformed_share=0.02,
                                                     late_share=0.01, duplicate_share=0.02))
                    .messages(4000, NOW - 10 * DAY, 10 * DAY))
    segment = [as_segment(m, CONFIG.mapping) for m in messages]
    assert sum(m.value.startswith(b'{"type":"track"') for m in segment) > 3500
    well_formed = [m.value for m in segment if m.value.startswith(b'{"type":"track"')]
    runs = []
    for values in ([m.value for m in messages], [m.value for m in segment]):
        scorer = Scorer(CONFIG)
        results = [r for v in values for r in scorer.process_message(v, NOW)]
        runs.append((scorer, [(r.outcome, r.reason) for r in results],
                     [(a.customer_id, a.rule) for r in results for a in r.alerts]))
    (own, own_results, own_alerts), *others = runs
    assert sum(outcome is Outcome.ACCEPTED for outcome, _ in own_results) > 3000 and own_alerts
    for scorer, results, alerts in others:
        assert results == own_results and alerts == own_alerts
        assert scorer.customers == own.customers
        assert scorer.kpis(NOW).to_dict() == own.kpis(NOW).to_dict()
    one_by_one, in_arrays = Scorer(CONFIG), Scorer(CONFIG)
    singly = [(r.outcome, r.reason) for v in well_formed for r in one_by_one.process_message(v, NOW)]
    arrays = [(r.outcome, r.reason) for i in range(0, len(well_formed), 50)
              for r in in_arrays.process_message(pack(well_formed[i:i + 50], "array"), NOW)]
    assert arrays == singly and in_arrays.customers == one_by_one.customers


def test_inside_a_batch_message_a_segment_message_is_read_on_its_own():
    message = pack([orjson.dumps(track()), orjson.dumps(track(event="Unknown Thing", messageId="m-2"))], "array")
    read = unpack(message, CONFIG)
    assert read[0].event is not None and read[0].event.type == "purchase"
    assert read[1].rejection is not None and read[1].rejection.reason is Reason.UNMAPPED_EVENT
