"""The demo's population looks like a real one: a spread across tiers with
most customers moderate or low and a few champions, cohorts for retention and churn, and
the demo's last word is a real alert with its explanation.

Bands the default demo must land in (the generator's personas and the default targets are
tuned together; docs/scores-and-kpis.md states them): excellent 4-18 %, moderate 8-30 %,
low 55-85 % of the scored customers; retention and churn strictly between 0 and 100.
"""

from __future__ import annotations

import re

from scoring.config import load_config
from devstack.demo import DemoSettings, run_offline
from devstack.traffic import PERSONAS

BANDS = {"excellent": (4, 18), "moderate": (8, 30), "low": (55, 85)}


def test_the_default_demo_population_spreads_over_the_tiers_and_has_cohorts():
    lines: list[str] = []
    scorer = run_offline(load_config(), DemoSettings(), lines.append)
    settings = DemoSettings()
    k = scorer.kpis(settings.start_ms + settings.days * 86_400_000)
    scored = sum(k.tier_counts.values())
    shares = {tier: 100 * count / scored for tier, count in k.tier_counts.items()}
    for tier, (low, high) in BANDS.items():
        assert low <= shares[tier] <= high, (tier, shares)
    assert 0 < k.retention_rate < 100 and 0 < k.churn_rate < 100, (k.retention_rate, k.churn_rate)
    assert k.members_at_start > 0 and k.members_lost > 0 and k.new_members > 0   # cohorts, and a churning tail
    assert 0 < k.week_one_engagement < 100
    assert k.median_es < 50 < max(card.es for card in scorer.leaderboard(k.as_of_ms, limit=1))

    text = "\n".join(lines)
    story = text.rstrip().splitlines()[-2:]                     # the summary ends with one real alert, explained
    assert re.match(r"Latest alert: (tier_downgrade|score_drop|inactive|not_activated) for c\d+ at ", story[0])
    assert re.match(r"\s+ES \d+\.\d → \d+\.\d \(.+\) over 7 days: .+", story[1]), story


def test_personas_cover_the_population_once():
    assert abs(sum(p.share for p in PERSONAS) - 1.0) < 1e-9
    assert len({p.name for p in PERSONAS}) == len(PERSONAS) and any(p.fades for p in PERSONAS)


def test_the_demo_story_prefers_an_alert_whose_explanation_shows_the_fall():
    from devstack.demo import alert_story

    rising = {"rule": "score_drop", "customer_id": "c0", "as_of": 2_000,
              "why": {"sentence": "ES 5.2 → 10.1 (still low)", "es_before": 5.2, "es_now": 10.1}}
    falling = {"rule": "inactive", "customer_id": "c9", "as_of": 1_000,
               "why": {"sentence": "ES 40.0 → 20.0 (still low)", "es_before": 40.0, "es_now": 20.0}}
    assert "for c9 " in alert_story([rising, falling]) and "ES 40.0 → 20.0" in alert_story([rising, falling])
    assert "for c0 " in alert_story([rising])            # none falls: the most telling rule still tells
