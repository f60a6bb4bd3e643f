"""`engage demo`: the scorer end to end on generated traffic.

Offline mode runs the pure core over the synthetic stream on a simulated clock and
prints the live state as it goes; it needs no services.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from scoring.config import Config
from scoring.engine import Outcome, Scorer
from scoring.synthetic import TrafficGenerator, TrafficSettings
from scoring.timeutil import DAY, format_rfc3339
from streams import render


@dataclass
class DemoSettings:
    customers: int = 600
    accounts: int = 60
    events: int = 40000
    days: int = 45
    seed: int = 7
    start_ms: int = 1_790_000_000_000  # 2026-09-21, a fixed start keeps runs reproducible


def run_offline(config: Config, settings: DemoSettings, echo: Callable[[str], None]) -> Scorer:
    scorer = Scorer(config)
    traffic = TrafficGenerator(TrafficSettings(customers=settings.customers, accounts=settings.accounts,
                                               seed=settings.seed))
    outcomes: Counter[str] = Counter()
    alerts: Counter[str] = Counter()
    next_tick = settings.start_ms + DAY
    echo(f"Scoring {settings.events:,} generated events for {settings.customers:,} customers "
         f"over {settings.days} simulated days (offline: pure core, no services)\n")
    echo(f"{'day':>10}  {'events':>7}  {'accepted':>8}  {'dup':>4}  {'rejected':>8}  "
         f"{'AER %':>6}  {'DAU':>5}  {'MAU':>6}  {'mean ES':>7}  {'alerts':>6}")
    now = settings.start_ms
    for index, message in enumerate(traffic.messages(settings.events, settings.start_ms, settings.days * DAY)):
        now = message.at_ms
        while now >= next_tick:
            for alert in scorer.sweep(next_tick):
                alerts[alert.rule.value] += 1
            _status(echo, scorer, next_tick, index, outcomes, alerts)
            next_tick += DAY
        result = scorer.process(message.value, now)
        outcomes[result.outcome.value if result.outcome is not Outcome.REJECTED else f"rejected:{result.reason}"] += 1
        for alert in result.alerts:
            alerts[alert.rule.value] += 1
    _status(echo, scorer, now, settings.events, outcomes, alerts)
    _summary(echo, scorer, now, outcomes, alerts)
    return scorer


def _status(echo: Callable[[str], None], scorer: Scorer, at: int, seen: int,
            outcomes: Counter[str], alerts: Counter[str]) -> None:
    k = scorer.kpis(at)
    rejected = sum(n for key, n in outcomes.items() if key.startswith("rejected:"))
    echo(f"{format_rfc3339(at)[:10]:>10}  {seen:>7,}  {outcomes['accepted']:>8,}  {outcomes['duplicate']:>4,}  "
         f"{rejected:>8,}  {k.aer:>6.2f}  {k.dau:>5,}  {k.mau:>6,}  {k.mean_es:>7.2f}  {sum(alerts.values()):>6,}")


def _summary(echo: Callable[[str], None], scorer: Scorer, now: int, outcomes: Counter[str],
             alerts: Counter[str]) -> None:
    echo(f"\nKPIs as of {format_rfc3339(now)}\n")
    echo(render.kpi_table(scorer.kpis(now)))
    echo("\nTop customers by engagement score\n")
    top = scorer.leaderboard(now, limit=5)
    echo(render.leaderboard_table(top))
    echo("\nBottom customers (at risk)\n")
    echo(render.leaderboard_table(scorer.leaderboard(now, limit=5, bottom=True)))
    accounts = {s.account_id for s in scorer.customers.values() if s.account_id}
    cards = [c for c in (scorer.account(a, now) for a in sorted(accounts)) if c is not None]
    cards.sort(key=lambda a: (-a.es, a.account_id))
    echo("\nTop accounts (B2B roll-up)\n")
    echo(render.account_table(cards[:5]))
    if top:
        echo(f"\nWhy {top[0].customer_id} scores {top[0].es:.1f}: breakdown by event type\n")
        echo(render.breakdown_table(top[0]))
    echo("\nOutcomes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items())))
    echo("Alerts:   " + (", ".join(f"{k} {v:,}" for k, v in sorted(alerts.items())) or "none"))
