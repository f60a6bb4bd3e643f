"""KPIs per segment (docs/scores-and-kpis.md, "KPIs per segment"): the aggregates kept by deltas for
each tracked segment equal the business KPIs over the customers in it now; hand-worked moves."""

from __future__ import annotations

from scoring.business import business_kpis, kpis_from
from scoring.config import load_config
from scoring.engine import Scorer
from scoring.events import validate_event
from scoring.deltas import segment_shares
from scoring.segment_kpis import kpi_segments, segment_states
from scoring.timeutil import HOUR
from tests.builders import NOW, ev
from tests.scoring.test_standing import DeltaStore

CONFIG = load_config(overrides={"kpis": {"segments": ["smb", "enterprise"]}})
BY_PLAN = load_config(overrides={"kpis": {"segments": ["growth", "starter"]}, "scoring": {"segment_from": "plan"}})


def fed(config, batches: list[list[dict]]) -> tuple[DeltaStore, Scorer, list]:
    """The same batches through the delta store and the reference scorer; the deltas of each batch."""
    store, reference, deltas = DeltaStore(config), Scorer(config), []
    for i, batch in enumerate(batches):
        events = [validate_event(dict(e), config) for e in batch]
        now = NOW + i
        deltas.append(store.batch(events, now).deltas)
        reference.process_batch(events, now)
    return store, reference, deltas


def segment_kpis_equal(store: DeltaStore, reference: Scorer, config, as_of: int = NOW + 10) -> None:
    for segment in kpi_segments(config):
        kept = kpis_from(store.book.segment_aggregates(segment, as_of), as_of, config)
        assert kept == business_kpis(segment_states(reference.customers.values(), segment, config), as_of, config), \
            segment


def test_the_tracked_segments_are_the_listed_ones_and_those_with_a_scorecard_sorted():
    config = load_config(overrides={"kpis": {"segments": ["smb"]}, "scorecards": {"enterprise": {"weights": {"like": 8}}}})
    assert kpi_segments(config) == ("enterprise", "smb")
    assert kpi_segments(load_config()) == ()


def test_a_customer_that_moves_takes_everything_it_holds_to_its_new_segment():
    store, reference, deltas = fed(CONFIG, [
        [ev("a", "like", NOW - 3 * HOUR, segment="smb"), ev("a", "purchase", NOW - 2 * HOUR, value=40),
         ev("a", "feature_used", NOW - 2 * HOUR, feature="export"), ev("b", "like", NOW - 3 * HOUR, segment="smb")],
        [ev("a", "share", NOW - HOUR, segment="enterprise")]])      # a moves, with a new event in the same batch
    smb = kpis_from(store.book.segment_aggregates("smb", NOW + 10), NOW + 10, CONFIG)
    enterprise = kpis_from(store.book.segment_aggregates("enterprise", NOW + 10), NOW + 10, CONFIG)
    assert (smb.likes, smb.revenue, smb.transactions, smb.shares) == (1, 0.0, 0, 0)           # b's only
    assert (enterprise.likes, enterprise.revenue, enterprise.transactions, enterprise.shares) == (1, 40.0, 1, 1)
    assert (smb.scored_customers, enterprise.scored_customers) == (1, 1)
    assert (smb.feature_usage, enterprise.feature_usage) == ({"*": 0.0}, {"*": 100.0})
    (move,) = [d for d in deltas[1] if d.customer_id == "a"]
    leaving, entering = segment_shares(move)
    assert (leaving.segment, leaving.leaves is not None, entering.segment) == ("smb", True, "enterprise")
    segment_kpis_equal(store, reference, CONFIG)


def test_a_customer_in_an_untracked_segment_counts_in_none_and_leaving_one_for_it_empties_it():
    store, reference, _ = fed(CONFIG, [
        [ev("a", "like", NOW - 3 * HOUR, segment="smb")],
        [ev("a", "like", NOW - 2 * HOUR, segment="mid_market")]])     # not tracked: a leaves smb for none
    smb = kpis_from(store.book.segment_aggregates("smb", NOW + 10), NOW + 10, CONFIG)
    assert (smb.likes, smb.scored_customers, smb.members, smb.wau) == (0, 0, 0, 0)
    assert "mid_market" not in store.book.segments
    segment_kpis_equal(store, reference, CONFIG)


def test_a_segment_from_a_trait_moves_the_customer_when_the_trait_changes():
    store, reference, _ = fed(BY_PLAN, [
        [ev("a", "like", NOW - 3 * HOUR, traits={"plan": "starter"}), ev("b", "like", NOW - 3 * HOUR,
                                                                       traits={"plan": "starter"})],
        [ev("a", "traits", NOW - HOUR, traits={"plan": "growth"})]])
    growth = kpis_from(store.book.segment_aggregates("growth", NOW + 10), NOW + 10, BY_PLAN)
    starter = kpis_from(store.book.segment_aggregates("starter", NOW + 10), NOW + 10, BY_PLAN)
    assert (growth.likes, starter.likes, growth.dau, starter.dau) == (1, 1, 1, 1)
    segment_kpis_equal(store, reference, BY_PLAN)


def test_the_segment_kpis_add_up_to_the_whole_when_every_customer_is_in_one():
    store, reference, _ = fed(CONFIG, [
        [ev(c, t, NOW - h * HOUR, segment=s) for c, t, h, s in
         (("a", "like", 5, "smb"), ("b", "share", 4, "enterprise"), ("c", "page_view", 3, "smb"))],
        [ev("c", "comment", NOW - HOUR, segment="enterprise"), ev("a", "like", NOW - HOUR)]])
    whole = kpis_from(store.book.aggregates(NOW + 10), NOW + 10, CONFIG)
    parts = [kpis_from(store.book.segment_aggregates(s, NOW + 10), NOW + 10, CONFIG) for s in ("smb", "enterprise")]
    for name in ("likes", "shares", "comments", "scored_customers", "dau", "customer_interactions"):
        assert getattr(whole, name) == sum(getattr(p, name) for p in parts), name
    segment_kpis_equal(store, reference, CONFIG)
