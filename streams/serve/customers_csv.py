"""`GET /customers.csv`: the stored standings with their traits, streamed as CSV.

For spreadsheets and warehouse loads: one row per customer with a standing, in the bottom order
(lowest ES first), read a page at a time from the rank sets (`ReadStore.every_ranked`), never
held whole. The columns are fixed by the config, so every export of one deployment has the same
header: the standing's own, then one `traits.<name>` column per allowed trait (empty when the
customer has none). A text cell that a spreadsheet would run as a formula (it begins with `=`,
`+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from scoring.config import Config
from scoring.formulas import Tier
from scoring.standing import Standing
from streams.state.ports import ReadStore

COLUMNS = ("customer_id", "account_id", "segment", "es", "cer", "tier", "active", "alerts")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PAGE = 500


@dataclass(frozen=True)
class Selection:
    """Which customers an export lists: all of them, or those matching every filter given."""

    segment: str | None = None           # a segment with a leaderboard of its own
    tier: Tier | None = None
    below_benchmark: bool | None = None  # counted (or not) by the below-benchmark KPI

    def admits(self, standing: Standing) -> bool:
        return ((self.tier is None or standing.tier is self.tier)
                and (self.below_benchmark is None or standing.below_benchmark is self.below_benchmark))


def _text(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_START) else value


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _text(value) if isinstance(value, str) else value


def header(traits: Sequence[str]) -> list[str]:
    return [*COLUMNS, *(f"traits.{name}" for name in traits)]


def row(standing: Standing, traits: Sequence[str]) -> list[object]:
    """One customer's cells: its standing as the leaderboards show it, its active alerts (`;`
    between them) and its traits as the reads show them."""
    shown = dict(standing.traits)
    summary = standing.summary()
    return [_cell(v) for v in (summary["customer_id"], summary["account_id"], standing.segment, summary["es"],
                               summary["cer"], summary["tier"], summary["active"], ";".join(standing.alerts),
                               *(shown.get(name) for name in traits))]


def encode(rows: Iterable[list[object]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


async def export(store: ReadStore, config: Config, selection: Selection) -> AsyncIterator[bytes]:
    """The header, then each page of matching customers' rows."""
    traits = sorted(config.traits)
    yield encode([header(traits)])
    async for ids in store.every_ranked(selection.segment, PAGE):
        standings = await store.standings(ids)
        rows = [row(standings[c], traits) for c in ids if c in standings and selection.admits(standings[c])]
        if rows:
            yield encode(rows)
