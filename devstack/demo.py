"""`./engage demo`: the scorer end to end on generated traffic.

Offline mode runs the pure core over the synthetic stream on a simulated clock and
prints the live state as it goes; it needs no services.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.alerts import Alert
from scoring.config import Config
from scoring.engine import Outcome, Scorer
from scoring.timeutil import DAY, format_rfc3339
from devstack import render
from devstack.traffic import TrafficGenerator, TrafficSettings


@dataclass
class DemoSettings:
    customers: int = 600
    accounts: int = 60
    events: int = 80000
    days: int = 45                     # >= 35: retention, churn and week-1 need a month-old cohort
    seed: int = 7
    start_ms: int = 1_790_000_000_000  # 2026-09-21, a fixed start keeps runs reproducible


def run_offline(config: Config, settings: DemoSettings, echo: Callable[[str], None]) -> Scorer:
    scorer = Scorer(config)
    traffic = TrafficGenerator(TrafficSettings(customers=settings.customers, accounts=settings.accounts,
                                               seed=settings.seed, population="personas"))
    outcomes: Counter[str] = Counter()
    alerts: Counter[str] = Counter()
    latest: dict[str, Alert] = {}          # the newest alert of each rule
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
                latest[alert.rule.value] = alert
            _status(echo, scorer, next_tick, index, outcomes, alerts)
            next_tick += DAY
        result = scorer.process(message.value, now)
        outcomes[result.outcome.value if result.outcome is not Outcome.REJECTED else f"rejected:{result.reason}"] += 1
        for alert in result.alerts:
            alerts[alert.rule.value] += 1
            latest[alert.rule.value] = alert
    _status(echo, scorer, now, settings.events, outcomes, alerts)
    _summary(echo, scorer, now, outcomes, alerts)
    if latest:
        echo(alert_story([a.to_dict() for a in latest.values()]))
    return scorer


DEMO_CONFIG = Path(__file__).with_name("demo.toml")    # the live demo's scoring config (without --config)
CATCH_UP_S = 60.0   # how long the closing view waits for the worker to consume everything sent
STORY_ORDER = ("tier_downgrade", "score_drop", "inactive", "not_activated")   # the most telling first


def alert_story(alerts: list[Mapping[str, Any]]) -> str:
    """The demo's last word: one real alert and why it fired: the newest of the most telling rule,
    among those whose explanation shows the score falling if there are any (a score drop's own
    reference can differ from the explanation's week-ago window: docs/alerts.md)."""
    def falling(a: Mapping[str, Any]) -> bool:
        why = a.get("why") or {}
        return why.get("es_now") is not None and why.get("es_before") is not None and why["es_now"] < why["es_before"]

    alert = min(alerts, key=lambda a: (not falling(a),
                                       STORY_ORDER.index(str(a["rule"])) if a["rule"] in STORY_ORDER else 9,
                                       -int(a["as_of"])))
    why = alert.get("why") or {}
    return (f"\nLatest alert: {alert['rule']} for {alert['customer_id']} at {format_rfc3339(int(alert['as_of']))}\n"
            f"  {why.get('sentence', '')}")


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


# --- live mode -----------------------------------------------------------------------------


@dataclass
class LiveDemoSettings:
    customers: int = 600
    accounts: int = 60
    backfill: int = 60000         # events spread over the last 40 days, sent first (a month-old cohort)
    backfill_days: int = 40
    rate: float = 200.0           # live events per second afterwards
    duration_s: float = 60.0      # how long the live part runs (0 = until Ctrl-C)
    refresh_s: float = 2.0
    seed: int = 7
    web_port: int | None = None


def run_live(config_path: str | None, demo: LiveDemoSettings, echo: Callable[[str], None]) -> None:
    """Local stack up, topics, a worker process, backfill, then live traffic as Segment-spec messages
    and a refreshing view; last, what a customer-success team does with it: a scorecard of measures,
    an ARR-weighted account with its traits, and an alert acknowledged through the API. Without
    `config_path`, the demo's own config (DEMO_CONFIG: measures, KPIs per segment, weighted accounts)."""
    import os
    import secrets
    import sys
    import threading
    import urllib.request

    import orjson

    from scoring.business import BusinessKpis
    from devstack.traffic import TrafficSettings
    from devstack import stack as local
    from devstack.producer import GenerateOptions, generate
    from streams.security import auth_header
    from streams.settings import load_settings
    from streams.worker.topics import ensure_topics

    echo("Starting the local stack (Kafka KRaft + Redis) ...")
    running = local.up(log=lambda line: echo(f"  {line}"))
    port = demo.web_port or local.free_port()
    settings = load_settings({"kafka_bootstrap": running.kafka_bootstrap, "redis_url": running.redis_url,
                              "web_port": port})
    ensure_topics(settings)
    log_dir = local.stack_dir().parent / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    config_path = config_path or str(DEMO_CONFIG)
    command = [sys.executable, "-m", "streams.cli", "--config", config_path, "worker", "--web-port", str(port)]
    # the alert work routes need a write token of their own: the demo makes one unless one is set
    write_token = os.environ.get("ENGAGE_API_WRITE_TOKEN") or secrets.token_urlsafe(24)
    env = {**os.environ, "ENGAGE_KAFKA_BOOTSTRAP": running.kafka_bootstrap, "ENGAGE_REDIS_URL": running.redis_url,
           "ENGAGE_KPI_INTERVAL_S": str(demo.refresh_s), "ENGAGE_SWEEP_INTERVAL_S": "5",
           "ENGAGE_API_WRITE_TOKEN": write_token}
    worker_log = log_dir / "worker.log"
    worker = subprocess.Popen(command, env=env, stdout=open(worker_log, "ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    headers = auth_header(settings)   # the worker inherits ENGAGE_API_TOKEN from this environment

    def get(path: str) -> object:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=10) as response:
            return orjson.loads(response.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            if worker.poll() is not None:   # its last line says why (a bad setting, a prefix of another format)
                last = worker_log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                raise RuntimeError(f"the worker exited: {last[0]} (log: {worker_log})")
            try:
                get("/readyz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker did not become ready; see {worker_log}") from None
                time.sleep(0.5)
        traffic = TrafficSettings(customers=demo.customers, accounts=demo.accounts, seed=demo.seed,
                                  population="personas")
        echo(f"Worker ready: API {base}/kpis  metrics {base}/metrics  (log: {worker_log})")
        echo(f"  scoring config: {config_path}")
        echo(f"  many customers at once: curl -s -X POST {base}/customers:batch -d '{{\"ids\": [\"c1\", \"c2\"]}}'"
             f"  (every route: {base}/openapi.json)")
        echo(f"Backfilling {demo.backfill:,} events of the last {demo.backfill_days} days ...")
        generate(settings, GenerateOptions(count=demo.backfill, rate=None, history_ms=demo.backfill_days * DAY,
                                           traffic=traffic, progress=False))
        live_count = int(demo.rate * demo.duration_s) if demo.duration_s else 10**12
        echo("Live traffic as Segment-spec messages (track, identify, group), as a team's pipeline sends them ...")
        live = threading.Thread(target=generate, daemon=True, args=(settings, GenerateOptions(
            count=live_count, rate=demo.rate, progress=False, segment=True,
            traffic=TrafficSettings(customers=demo.customers, accounts=demo.accounts, seed=demo.seed + 1,
                                    population="personas"))))
        live.start()
        started = time.monotonic()
        tty = sys.stdout.isatty()
        while live.is_alive() and (not demo.duration_s or time.monotonic() - started < demo.duration_s + 5):
            time.sleep(demo.refresh_s)
            _render_live(echo, get, base, BusinessKpis, tty, time.monotonic() - started, headers)
        live.join(timeout=5)
        if demo.duration_s:   # the closing view shows everything sent, however busy the machine was
            _wait_caught_up(echo, base, headers, demo.backfill + live_count, worker)
        _render_live(echo, get, base, BusinessKpis, False, time.monotonic() - started, headers)
        echo(f"\nDone. The stack keeps running (`./engage stack down` stops it); "
             f"`./engage worker` serves {base} again.")
        recent = get("/alerts/recent?limit=100")["alerts"]
        if recent:
            echo(alert_story(recent))
        _show_scorecard(echo, get)
        _acknowledge_an_alert(echo, get, base, {**(headers or {}), "Authorization": f"Bearer {write_token}"})
    except KeyboardInterrupt:
        echo("\nStopped.")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _show_scorecard(echo: Callable[[str], None], get: Callable[[str], Any]) -> None:
    """A customer at risk (the lowest-scored with traits and NPS answers, if any): its measures and
    traits, and its ARR-weighted account."""
    at_risk = get("/at-risk?limit=1000")["customers"]
    if not at_risk:
        return
    with_traits = [row for row in at_risk if row["traits"]] or at_risk
    cards = [get(f"/customers/{row['customer_id']}") for row in with_traits[:40]]
    card = min(cards, key=lambda c: (all(m["reading"] is None for m in c["measures"] if m["kind"] == "average"),
                                     cards.index(c)))
    echo(f"\nScorecard of {card['customer_id']} (ES {card['es']:.1f}, {card['tier']}): its measures\n")
    echo(render.table(("measure", "kind", "reading", "score", "ES points"),
                      [(m["name"], m["kind"], "–" if m["reading"] is None else f"{m['reading']:.2f}",
                        "–" if m["score"] is None else f"{m['score']:.0f}", f"{m['es']:.2f}")
                       for m in card["measures"]]))
    echo("traits: " + (", ".join(f"{k} {v}" for k, v in card["traits"].items()) or "none"))
    if card.get("account_id"):
        account = get(f"/accounts/{card['account_id']}")
        echo(f"account {account['account_id']}: ES {account['es']:.1f} ({account['tier']}) over {account['users']} "
             f"users, weighted by their ARR; its traits: "
             + (", ".join(f"{k} {v}" for k, v in account["traits"].items()) or "none"))


def _acknowledge_an_alert(echo: Callable[[str], None], get: Callable[[str], Any], base: str,
                          write: dict[str, str]) -> None:
    """The newest open alert, acknowledged through the API with the write token, as a CSM would."""
    import urllib.request

    import orjson

    open_alerts = get("/alerts?state=open&limit=1")["alerts"]
    if not open_alerts:
        echo("\nNo open alert to acknowledge.")
        return
    alert = open_alerts[0]
    request = urllib.request.Request(f"{base}/alerts/{alert['id']}/acknowledge", method="POST",
                                     data=orjson.dumps({"by": "demo", "note": "called the customer"}),
                                     headers={**write, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        worked = orjson.loads(response.read())
    echo(f"\nAlert {worked['id']} ({worked['rule']} for {worked['customer_id']}) is {worked['state']} by "
         f"{worked['work']['by']}: its condition's later alerts are recorded, not sent.\n"
         f"  POST {base}/alerts/{{id}}/acknowledge (ENGAGE_API_WRITE_TOKEN); GET {base}/alerts?state=acknowledged")


def _wait_caught_up(echo, base: str, headers: dict[str, str] | None, sent: int,  # type: ignore[no-untyped-def]
                    worker: subprocess.Popen, timeout_s: float = CATCH_UP_S) -> None:
    """Until the worker has consumed every event sent (or `timeout_s`): the closing view is then
    of all of them, not of what a busy machine got through in the live minute."""
    deadline = time.monotonic() + timeout_s
    consumed = 0.0
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            consumed = _counters(base, headers).get("consumed", 0)
        except OSError:
            consumed = 0
        if consumed >= sent:
            return
        time.sleep(0.5)
    echo(f"(the worker has consumed {consumed:,.0f} of the {sent:,} events sent; showing it as it is)")


def _render_live(echo, get, base, kpi_type, clear: bool, elapsed: float,  # type: ignore[no-untyped-def]
                 headers: dict[str, str] | None = None) -> None:
    try:
        k = kpi_type(**get("/kpis"))
        top = get("/leaderboard?order=top&limit=5")["customers"]
        bottom = get("/leaderboard?order=bottom&limit=5")["customers"]
        metrics = _counters(base, headers)
    except OSError as exc:
        echo(f"(waiting for the worker: {exc})")
        return
    if clear:
        echo("\033[H\033[J")  # home + clear screen: a refreshing view on a terminal
    echo(f"\nLive engagement KPIs ({elapsed:,.0f} s)   API {base}   metrics {base}/metrics")
    echo(f"consumed {metrics.get('consumed', 0):,.0f}  applied {metrics.get('processed', 0):,.0f}  "
         f"duplicates {metrics.get('deduplicated', 0):,.0f}  dead-lettered {metrics.get('rejected', 0):,.0f}  "
         f"alerts {metrics.get('alerts', 0):,.0f}\n")
    echo(render.kpi_table(k))
    rows = [(c["customer_id"], c["account_id"], c["es"], c["tier"], c["cer"]) for c in top]
    echo("\nTop customers\n" + render.table(("customer", "account", "ES", "tier", "CER"), rows))
    rows = [(c["customer_id"], c["account_id"], c["es"], c["tier"], c["cer"]) for c in bottom]
    echo("\nBottom customers\n" + render.table(("customer", "account", "ES", "tier", "CER"), rows))


def _counters(base: str, headers: dict[str, str] | None = None) -> dict[str, float]:
    import urllib.request

    request = urllib.request.Request(base + "/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("engagement_") and "_total" in line:
            name, value = line.rsplit(" ", 1)
            short = name.split("_total")[0].removeprefix("engagement_").removeprefix("events_")
            totals[short] = totals.get(short, 0.0) + float(value)
    return totals
