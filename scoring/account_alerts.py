"""Account-level alerts: an account's mean ES dropping or its tier falling, with the users behind it.

A B2B customer-success manager owns accounts, not users. An account's score is its users'
roll-up (ES their mean, each user by its own scorecard, weighted by `accounts.weight` when it
names a trait; the tier by the default thresholds), as `GET /accounts/{id}` shows it. The edge
evaluates an account when one of its users' standings changed, against the account's snapshot
of its last evaluation:

* `account_tier_downgrade`: the account's tier is below the tier of the last evaluation;
* `account_score_drop`: the mean ES fell by more than `alerts.score_drop_percent` % below its
  baseline (the highest mean since the last alert of this rule, at least
  `alerts.score_drop_min_reference`); the baseline restarts from the mean once it fired.

Each alert names the users that drove it (the three whose ES fell the most since the last
evaluation, and users who left the account) in data and in one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from scoring import formulas
from scoring.config import Config

if TYPE_CHECKING:
    from scoring.standing import Standing

MAX_DRIVERS = 3


def accounts_to_evaluate(old: Standing | None, new: Standing | None) -> set[str]:
    """The accounts whose roll-up a user's new standing may have moved: the one it is in and the
    one it left, when its ES, tier or account changed (a new user counts as changed)."""
    if new is None or (old is not None and (old.es, old.tier, old.account_id) == (new.es, new.tier, new.account_id)):
        return set()
    return {a for a in (old.account_id if old else None, new.account_id) if a}


class AccountRule(StrEnum):
    TIER_DOWNGRADE = "account_tier_downgrade"
    SCORE_DROP = "account_score_drop"


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """What the rules remember of an account's last evaluation (small, persisted by the edge)."""

    tier: formulas.Tier
    es: float
    baseline_es: float                    # the score-drop reference: highest mean since its last alert
    users: Mapping[str, float]            # user -> ES at that evaluation

    def to_dict(self) -> dict[str, object]:
        return {"tier": self.tier.value, "es": self.es, "baseline_es": self.baseline_es, "users": dict(self.users)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> AccountSnapshot:
        return cls(formulas.Tier(doc["tier"]), float(doc["es"]), float(doc["baseline_es"]),  # type: ignore[arg-type]
                   dict(doc["users"]))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class UserChange:
    customer_id: str
    es_before: float | None               # None: not a user of the account at the last evaluation
    es_now: float | None                  # None: no longer a user of it

    def phrase(self) -> str:
        if self.es_now is None:
            return f"{self.customer_id} left"
        return f"{self.customer_id} {self.es_before or 0.0:.1f} → {self.es_now:.1f}"

    def to_dict(self) -> dict[str, object]:
        return {"customer_id": self.customer_id, "es_before": self.es_before, "es_now": self.es_now}


@dataclass(frozen=True, slots=True)
class AccountAlert:
    rule: AccountRule
    account_id: str
    as_of_ms: int
    before: dict[str, object]             # tier and mean ES (a score drop: its baseline)
    after: dict[str, object]
    users: int
    drivers: tuple[UserChange, ...]
    sentence: str

    def to_dict(self) -> dict[str, object]:
        return {"rule": self.rule.value, "account_id": self.account_id, "customer_id": None, "as_of": self.as_of_ms,
                "before": self.before, "after": self.after, "users": self.users,
                "why": {"sentence": self.sentence, "drivers": [d.to_dict() for d in self.drivers]}}


def roll_up(users: Mapping[str, float], config: Config,
            weights: Mapping[str, float] | None = None) -> tuple[float, formulas.Tier]:
    """(mean ES, tier) of an account whose users have these ES, weighted by `weights` (None: each
    counts once; scores.account_weights): GET /accounts/{id}'s roll-up."""
    es = formulas.weighted_mean(users.values(), None if weights is None else [weights[c] for c in users])
    return es, formulas.tier(es, config.scoring.tier_excellent, config.scoring.tier_moderate)


def evaluate_account(previous: AccountSnapshot | None, account_id: str, users: Mapping[str, float],
                     as_of_ms: int, config: Config,
                     weights: Mapping[str, float] | None = None) -> tuple[list[AccountAlert], AccountSnapshot]:
    """Alerts that fire for the account now, and the snapshot to keep (`weights`: each user's weight
    in the mean, None: each counts once). No users: nothing fires."""
    es, tier = roll_up(users, config, weights)
    if previous is None or not users:
        return [], AccountSnapshot(tier, es, es, dict(users))
    cfg = config.alerts
    changes = [UserChange(c, previous.users.get(c), users.get(c)) for c in sorted(set(previous.users) | set(users))]
    falls = sorted((c for c in changes if c.es_now is not None and c.es_before is not None and c.es_now < c.es_before),
                   key=lambda c: (c.es_now - c.es_before, c.customer_id))       # type: ignore[operator]
    left = [c for c in changes if c.es_now is None]
    drivers = tuple((falls + left)[:MAX_DRIVERS])                 # the biggest falls first, then who left
    fired: list[AccountAlert] = []

    def alert(rule: AccountRule, before: tuple[formulas.Tier, float], extra: dict[str, object]) -> None:
        tiers = f"{before[0].value} → {tier.value}" if before[0] is not tier else f"still {tier.value}"
        sentence = (f"account {account_id}: mean ES {before[1]:.1f} → {es:.1f} ({tiers}) across {len(users)} users"
                    + (": " + ", ".join(d.phrase() for d in drivers) if drivers else ""))
        fired.append(AccountAlert(rule, account_id, as_of_ms, {"tier": before[0].value, "es": before[1]},
                                  {"tier": tier.value, "es": es, **extra}, len(users), drivers, sentence))

    if cfg.tier_downgrade and tier.rank < previous.tier.rank:
        alert(AccountRule.TIER_DOWNGRADE, (previous.tier, previous.es), {})
    baseline = max(previous.baseline_es, es)
    if cfg.score_drop_percent > 0 and baseline >= cfg.score_drop_min_reference and baseline > 0:
        drop = 100.0 * (baseline - es) / baseline
        if drop > cfg.score_drop_percent:
            alert(AccountRule.SCORE_DROP, (formulas.tier(baseline, config.scoring.tier_excellent,
                                                         config.scoring.tier_moderate), baseline),
                  {"drop_percent": drop})
            baseline = es
    return fired, AccountSnapshot(tier, es, baseline, dict(users))
