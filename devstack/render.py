"""Plain-text tables for the terminal: KPIs, leaderboards, breakdowns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scoring.business import BusinessKpis
from scoring.scores import AccountCard, ScoreCard


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(".", "").replace("-", "").replace("%", "").isdigit()


def kpi_table(k: BusinessKpis) -> str:
    rows = [
        ("Active Engagement Rate", f"{k.aer:.2f} %", f"band {k.aer_band}; {k.active_members:,} of {k.members:,} members"),
        ("DAU / WAU / MAU", f"{k.dau:,} / {k.wau:,} / {k.mau:,}", f"stickiness {k.stickiness:.1f} %"),
        ("Retention / churn", f"{k.retention_rate:.1f} % / {k.churn_rate:.1f} %",
         f"start {k.members_at_start:,}, new {k.members_new:,}, lost {k.members_lost:,}"),
        ("Week-1 engagement", f"{k.week_one_engagement:.1f} %", f"{k.new_members:,} new members"),
        ("NPS / CSAT / CES", f"{k.nps:.1f} / {k.csat:.1f} % / {k.ces:.2f}",
         f"{k.nps_responses:,} / {k.csat_responses:,} / {k.ces_responses:,} responses"),
        ("CSAT across channels", f"{k.csat_overall:.1f} %",
         ", ".join(f"{c} {v:.0f} %" for c, v in k.csat_by_channel.items() if k.channel_interactions.get(c))),
        ("Sentiment social / reviews", f"{k.social_sentiment:.1f} / {k.review_sentiment:.1f}", ""),
        ("Conversion / CTR / open", f"{k.conversion_rate:.2f} / {k.click_through_rate:.2f} / {k.open_rate:.2f} %", ""),
        ("Bounce rate", f"{k.bounce_rate:.1f} %",
         f"{k.sessions:,} sessions, {k.pages_per_session:.2f} pages, {k.actions_per_session:.2f} actions, "
         f"{k.average_session_duration:.0f} s"),
        ("Activation / abandonment", f"{k.activation_rate:.1f} % / {k.abandonment_rate:.1f} %",
         "of ended sessions; with bounce they make 100 %"),
        ("Share of voice", f"{k.share_of_voice:.1f} %",
         f"{k.brand_searches:,} brand / {k.competitor_searches:,} competitor searches"),
        ("Scans", f"{k.scans:,}", ", ".join(f"{d} {n:,}" for d, n in k.scans_by_device.items() if n)),
        ("ARPU / ATV / CLV", f"{k.arpu:.2f} / {k.average_transaction_value:.2f} / {k.customer_lifetime_value:.2f}",
         f"revenue {k.revenue:,.2f} in {k.transactions:,} transactions"),
        ("FCR / AHT", f"{k.first_contact_resolution:.1f} % / {k.average_handle_time:.0f} s", ""),
        ("Feature usage (any)", f"{k.feature_usage.get('*', 0.0):.1f} %", ""),
        ("Engagement score", f"mean {k.mean_es:.1f}, median {k.median_es:.1f}",
         " / ".join(f"{t} {n:,}" for t, n in k.tier_counts.items())),
        ("CER below benchmark", f"{k.below_benchmark_share:.1f} %", f"mean CER {k.mean_cer:,.1f}"),
    ]
    return table(("KPI", "value", "detail"), rows)


def leaderboard_table(cards: Sequence[ScoreCard]) -> str:
    rows = [(c.customer_id, c.account_id, c.es, c.tier.value, c.cer, c.decayed, "yes" if c.active else "no")
            for c in cards]
    return table(("customer", "account", "ES", "tier", "CER", "decayed", "active"), rows)


def account_table(cards: Sequence[AccountCard]) -> str:
    rows = [(a.account_id, a.users, a.active_users, a.es, a.tier.value, a.cer) for a in cards]
    return table(("account", "users", "active", "mean ES", "tier", "CER"), rows)


def breakdown_table(card: ScoreCard) -> str:
    rows = [(t.type, t.count, t.weight, t.cer, t.component, t.es) for t in card.breakdown if t.count]
    return table(("type", "count", "weight", "CER", "m_k", "ES points"), rows)
