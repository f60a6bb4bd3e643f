"""The `engage` command line: the product's commands.

One module for every command, so `engage --help` and this file read alike; each command only
parses its flags and calls the module that does the work. The development commands (`stack`,
`demo`, `generate`) are the checkout's: `devstack.cli` adds them, with the local stack's
addresses as defaults, and this module never imports them. Longer than the other modules because
every command is here, each a few lines of flags.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

try:
    from scoring import build as core_build
except RuntimeError as exc:    # ENGAGE_CORE names no build, or a compiled one that is not there
    sys.exit(f"engage: {exc}")
from scoring.config import Config, ConfigError, load_config
from scoring.timeutil import format_duration

if TYPE_CHECKING:
    from streams.settings import Settings


def load_config_or_usage(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Engage(click.Group):
    """Misuse (a bad flag, config key or ENGAGE_* variable) is one line on stderr, exit code 2.

    Click's own usage errors print the usage and a hint around the message; scripts and
    people scanning logs want the message alone, naming what to fix.
    """

    def main(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except _NO_ARGS as exc:                 # a bare group: its help, as click shows it
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "engage"
            click.echo(f"Error: {exc.format_message()} (see '{where} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except Exception as exc:
            service = _unreachable(exc)
            if service is None:
                raise
            click.echo(f"Error: {service}: {type(exc).__name__}: {exc} (check {_ADDRESS_OF[service]})", err=True)
            sys.exit(1)


_ADDRESS_OF = {"Kafka": "ENGAGE_KAFKA_BOOTSTRAP / --kafka", "Redis": "ENGAGE_REDIS_URL / --redis"}


def _unreachable(exc: BaseException) -> str | None:
    """'Kafka' or 'Redis' when `exc` is that client's error (unreachable, refused, timed out)."""
    module = type(exc).__module__
    if module.startswith(("kafka.", "aiokafka.")):
        return "Kafka"
    if module.startswith("redis."):
        return "Redis"
    return None


@click.group(cls=_Engage, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ENGAGE_CONFIG", type=click.Path(dir_okay=False),
              help="Scoring config (TOML) over the defaults. Env: ENGAGE_CONFIG.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Streaming, real-time customer engagement scorer."""
    ctx.ensure_object(dict)["config_path"] = config_path


@main.group()
def config() -> None:
    """Inspect and check scoring configuration."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate a config file; exit 0 when it is good, 2 with the offending key when not."""
    if not Path(path).is_file():
        raise click.UsageError(f"config file not found: {path}")
    load_config_or_usage(path)
    click.echo(f"{path}: ok")


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective configuration as JSON: every key (and, under `derived`, the bucket retention)."""
    from scoring.config import config_mapping

    c = load_config_or_usage(ctx.obj["config_path"])
    shown = {**config_mapping(c), "derived": {"retention": format_duration(c.retention_ms)}}
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")


@config.command("settings")
def config_settings() -> None:
    """Print the effective runtime settings (ENGAGE_*) as JSON; secrets and URL passwords redacted."""
    json.dump(settings_from().redacted(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def settings_from(**flags: object) -> Settings:
    """The runtime settings: these flags, then ENGAGE_* variables, then the addresses a wrapper of
    this CLI passed in as `obj["address_defaults"]` (the checkout's `./engage`: the local stack's)."""
    from streams.settings import SettingsError, load_settings

    ctx = click.get_current_context(silent=True)
    defaults = (ctx.find_root().obj or {}).get("address_defaults") if ctx is not None else None
    try:
        return load_settings({k: v for k, v in flags.items() if v is not None},
                             defaults=defaults() if defaults is not None else None)
    except SettingsError as exc:
        flag = _flag_of(exc.name, flags)
        raise click.UsageError(f"{exc} (given by {flag})" if flag else str(exc)) from None


def _flag_of(variable: str, flags: dict[str, object]) -> str | None:
    """The command-line flag that set the setting behind `variable`, when one did (not the env)."""
    from streams.settings import ENV

    setting = next((name for name, env in ENV.items() if env == variable), None)
    ctx = click.get_current_context(silent=True)
    if setting is None or flags.get(setting) is None or ctx is None:
        return None
    if setting.endswith("_topic") and ctx.params.get("topic_prefix"):
        setting = "topic_prefix"
    return next((p.opts[0] for p in ctx.command.params if p.name == setting and p.opts), None)


# Commands that never talk to Redis (or Kafka) ignore its security settings: "" is the default.
NO_REDIS = {"redis_username": "", "redis_password": "", "redis_ssl_ca_file": "", "redis_cluster": "",
            "redis_sentinels": "", "redis_sentinel_master": ""}
NO_KAFKA = {"kafka_security_protocol": "", "kafka_sasl_mechanism": "", "kafka_username": "", "kafka_password": "",
             "kafka_ssl_cafile": ""}

_service_options = [
    click.option("--kafka", "kafka_bootstrap", help="Kafka bootstrap host:port. Env: ENGAGE_KAFKA_BOOTSTRAP."),
    click.option("--redis", "redis_url", help="Redis URL. Env: ENGAGE_REDIS_URL."),
    click.option("--topic-prefix", help="Prefix for every topic name (isolation), e.g. 'test1.'"),
]


def service_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_service_options):
        fn = option(fn)
    return fn


def topic_names(topic_prefix: str | None) -> dict[str, str]:
    from streams.settings import prefixed_topics

    return prefixed_topics(topic_prefix)


@main.command()
@service_options
@click.option("--app-id", help="Consumer group / Faust app id. Env: ENGAGE_APP_ID.")
@click.option("--key-prefix", help="Redis key prefix. Env: ENGAGE_KEY_PREFIX.")
@click.option("--web-port", type=int, help="HTTP port of the API and /metrics. Env: ENGAGE_WEB_PORT.")
@click.option("--partitions", type=int, help="Partitions of the topics. Env: ENGAGE_PARTITIONS.")
@click.option("--loglevel", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.pass_context
def worker(ctx: click.Context, kafka_bootstrap, redis_url, topic_prefix, app_id, key_prefix, web_port,
           partitions, loglevel) -> None:  # type: ignore[no-untyped-def]
    """Run a scoring worker (Faust): events in, Redis state, scores, alerts, API and /metrics."""
    config = load_config_or_usage(ctx.obj["config_path"])
    settings = settings_from(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, app_id=app_id,
                         key_prefix=key_prefix, web_port=web_port, partitions=partitions,
                         **topic_names(topic_prefix))
    from streams.processes import worker_app
    from streams.settings import SettingsError
    from streams.worker.app import run_worker
    from streams.worker.topics import cluster_replication, ensure_topics

    try:
        app, _ = worker_app(settings, config)   # touches no service yet
    except SettingsError as exc:   # chunked consumption on an unvalidated faust-streaming
        raise click.UsageError(str(exc)) from None
    click.echo(f"engage worker: settings {json.dumps(settings.redacted())}", err=True)
    _announce_core("worker")
    _check_layout(settings)
    try:
        ensure_topics(settings)
        # Faust's own topics (the assignor's) replicated like ours
        app.conf.topic_replication_factor = cluster_replication(settings)[0]
    except SettingsError as exc:   # ENGAGE_TOPIC_REPLICATION above the brokers
        raise click.UsageError(str(exc)) from None
    run_worker(app, loglevel)


def _announce_core(command: str) -> None:
    """One line: which build of the core's rules runs; a warning when it is not the compiled one
    and nobody asked for that (docs/performance.md, The compiled core)."""
    chosen = core_build.CHOSEN
    if chosen in (core_build.COMPILED_BUILD, core_build.ON_REQUEST):
        click.echo(f"engage {command}: scoring core {chosen}", err=True)
    else:
        click.echo(f"engage {command}: warning: scoring core {chosen}; it scores the same, more slowly", err=True)


def _check_layout(settings: Settings, claim: bool = True) -> None:
    """One line and exit 1 when the Redis may evict keys, or the key prefix holds state in a layout
    this version does not write (`claim`: mark an empty prefix as this layout's, and warn when the
    Redis's replicas and ENGAGE_REDIS_MIN_REPLICAS disagree)."""
    import asyncio

    from streams.state.store import EvictionPolicyError, LayoutError, RedisStore

    async def check() -> str | None:
        store = RedisStore.from_settings(settings)
        try:
            await store.check_eviction_policy()
            await store.check_layout(claim)
            return await store.check_replicas(settings.redis_min_replicas) if claim else None
        finally:
            await store.close()

    try:
        warning = asyncio.run(check())
    except (EvictionPolicyError, LayoutError) as exc:
        raise click.ClickException(str(exc)) from None
    if warning:
        click.echo(f"engage worker: warning: {warning}", err=True)


@main.command("api")
@click.option("--redis", "redis_url", help="Redis URL. Env: ENGAGE_REDIS_URL.")
@click.option("--key-prefix", help="Redis key prefix of the workers it serves. Env: ENGAGE_KEY_PREFIX.")
@click.option("--web-port", type=int, help="HTTP port. Env: ENGAGE_WEB_PORT.")
@click.option("--processes", "api_processes", type=int,
              help="Processes serving the port, each on its own core. Env: ENGAGE_API_PROCESSES (default 1).")
@click.pass_context
def api_command(ctx: click.Context, redis_url, key_prefix, web_port, api_processes) -> None:  # type: ignore[no-untyped-def]
    """Serve the read API and the live page from Redis, in a process of its own (no Kafka)."""
    import logging

    from streams.serve.api_server import run_api

    config = load_config_or_usage(ctx.obj["config_path"])
    settings = settings_from(redis_url=redis_url, key_prefix=key_prefix, web_port=web_port, kafka_bootstrap="unused:0",
                         api_processes=api_processes, **NO_KAFKA)
    click.echo(f"engage api: settings {json.dumps(settings.redacted())}", err=True)
    _announce_core("api")
    _check_layout(settings, claim=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    processes = f" in {settings.api_processes} processes" if settings.api_processes > 1 else ""
    click.echo(f"engage api: serving http://{settings.web_host}:{settings.web_port}/{processes}", err=True)
    if run_api(settings, config):
        raise click.ClickException("a serving process could not start (its reason is above)")


@main.command("alert-sink")
@service_options
@click.option("--url", "alert_webhook_url", help="Webhook receiving the alerts. Env: ENGAGE_ALERT_WEBHOOK_URL.")
@click.option("--app-id", help="Group is '<app-id>-alert-sink'. Env: ENGAGE_APP_ID.")
@click.option("--port", "alert_sink_port", type=int, help="HTTP port of /metrics and /healthz. "
              "Env: ENGAGE_ALERT_SINK_PORT (default 6067).")
@click.option("--key-prefix", help="Redis key prefix of the workers (what was done about each alert). "
              "Env: ENGAGE_KEY_PREFIX.")
@click.pass_context
def alert_sink(ctx: click.Context, kafka_bootstrap, redis_url, topic_prefix, alert_webhook_url, app_id,
               alert_sink_port, key_prefix) -> None:  # type: ignore[no-untyped-def]
    """Deliver alerts to webhooks (Slack-compatible JSON) by [alerts.routes], retrying until accepted;
    not those whose condition a team acknowledged or snoozed."""
    import asyncio
    import logging

    from streams.settings import named_webhooks
    from streams.sink.alert_sink import serve

    config = load_config_or_usage(ctx.obj["config_path"])
    settings = settings_from(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, key_prefix=key_prefix,
                         alert_webhook_url=alert_webhook_url, app_id=app_id, alert_sink_port=alert_sink_port,
                         **topic_names(topic_prefix))
    if not settings.alert_webhook_url:
        raise click.UsageError("setting ENGAGE_ALERT_WEBHOOK_URL (--url): required by alert-sink")
    named = named_webhooks(settings.alert_webhooks)
    for route in config.alerts.routes:
        if route.webhook not in named:
            raise click.UsageError(f"config key 'alerts.routes.{route.name}.webhook': no webhook "
                                   f"{route.webhook!r} in ENGAGE_ALERT_WEBHOOKS")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings, config))


@main.command()
@service_options
@click.option("--partitions", type=int, help="Partitions of new topics. Env: ENGAGE_PARTITIONS.")
def topics(kafka_bootstrap, redis_url, topic_prefix, partitions) -> None:  # type: ignore[no-untyped-def]
    """Create the events, DLQ, scores (compacted) and alerts topics."""
    from streams.settings import SettingsError
    from streams.worker.topics import ensure_topics

    settings = settings_from(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url or "redis://unused", **NO_REDIS,
                         partitions=partitions, **topic_names(topic_prefix))
    try:
        created = ensure_topics(settings)
    except SettingsError as exc:   # ENGAGE_TOPIC_REPLICATION above the brokers
        raise click.UsageError(str(exc)) from None
    for name, state in created.items():
        click.echo(f"{name}: {state}")


@main.command()
@service_options
@click.option("--key-prefix", help="Redis key prefix to rebuild. Env: ENGAGE_KEY_PREFIX.")
@click.option("--fresh/--no-fresh", default=True, show_default=True,
              help="Delete the prefix's keys first (a rebuild from scratch).")
@click.pass_context
def replay(ctx: click.Context, kafka_bootstrap, redis_url, topic_prefix, key_prefix, fresh) -> None:  # type: ignore[no-untyped-def]
    """Rebuild Redis from the events topic, from the earliest offset. Stop the workers first."""
    import asyncio

    from streams.worker.replay import replay as run_replay

    config = load_config_or_usage(ctx.obj["config_path"])
    settings = settings_from(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, key_prefix=key_prefix,
                         **topic_names(topic_prefix))
    try:
        count = asyncio.run(run_replay(settings, config, fresh,
                                       progress=lambda n: click.echo(f"\rreplayed {n:,} messages", nl=False, err=True)))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"\nreplayed {count:,} messages from {settings.events_topic} into prefix {settings.key_prefix!r}",
               err=True)


@main.command("import")
@click.option("--kafka", "kafka_bootstrap", help="Kafka bootstrap host:port. Env: ENGAGE_KAFKA_BOOTSTRAP.")
@click.option("--topic-prefix", help="Prefix for every topic name (isolation), e.g. 'test1.'")
@click.argument("source", type=click.File("r", encoding="utf-8"))
@click.option("--id", "import_id", required=True,
              help="The import's id: the same rows imported again under the same id change nothing.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "daily"]), default=None,
              help="jsonl (events, one per line), csv (a header of event fields) or daily (customer_id, date, "
                   "type, count). Default: csv for a .csv file, else jsonl.")
@click.option("--check", is_flag=True, help="Validate every line and report, sending nothing (no broker needed).")
@click.pass_context
def import_command(ctx: click.Context, kafka_bootstrap, topic_prefix, source, import_id, fmt, check) -> None:  # type: ignore[no-untyped-def]
    """Import history older than the live stream (a file, or - for stdin) into the buckets still kept."""
    from scoring.events import id_problem
    from streams.worker.history_import import check_import, run_import

    config = load_config_or_usage(ctx.obj["config_path"])
    problem = id_problem(import_id, config.limits.max_id_length)
    if problem:
        raise click.BadParameter(problem, param_hint="'--id'")
    fmt = fmt or ("csv" if str(getattr(source, "name", "")).endswith(".csv") else "jsonl")
    if check:
        report = check_import(config, source, fmt, import_id)
        where = "would be sent as history (--check: nothing sent)"
    else:
        settings = settings_from(kafka_bootstrap=kafka_bootstrap, redis_url="redis://unused", **NO_REDIS,
                                 **topic_names(topic_prefix))
        try:
            report = run_import(settings, config, source, fmt, import_id)
        except Exception as exc:  # noqa: BLE001 - the broker unreachable: one line, not a traceback
            raise click.ClickException(f"import {import_id!r} stopped: {exc}") from None
        where = f"sent to {settings.events_topic} as history"
    for line, why in report.invalid[:20]:
        click.echo(f"line {line}: {why}", err=True)
    if len(report.invalid) > 20:
        click.echo(f"... and {len(report.invalid) - 20:,} more", err=True)
    click.echo(f"import {import_id!r}: {report.sent:,} events {where}, {len(report.invalid):,} lines not sent",
               err=True)
    if report.invalid:
        sys.exit(1)          # lines left out: a script must see it (ctx.exit would be a return value here)


@main.command()
@click.argument("customer_id")
@click.option("--redis", "redis_url", help="Redis URL. Env: ENGAGE_REDIS_URL.")
@click.option("--key-prefix", help="Redis key prefix. Env: ENGAGE_KEY_PREFIX.")
@click.option("--as-of", type=click.IntRange(0), default=None, help="Epoch ms (default: now).")
@click.pass_context
def score(ctx: click.Context, customer_id: str, redis_url, key_prefix, as_of) -> None:  # type: ignore[no-untyped-def]
    """Print a customer's scores and breakdown as JSON (from Redis, scored by the core)."""
    import asyncio
    import time

    from streams.serve import api
    from streams.state.store import RedisStore

    config = load_config_or_usage(ctx.obj["config_path"])
    settings = settings_from(redis_url=redis_url, key_prefix=key_prefix, kafka_bootstrap="unused:0", **NO_KAFKA)

    async def lookup() -> dict[str, object]:
        store = RedisStore.from_settings(settings)
        try:
            return await api.customer(store, config, customer_id, as_of or time.time_ns() // 1_000_000)
        finally:
            await store.close()

    try:
        body = asyncio.run(lookup())
    except api.ApiError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1 if exc.status == 404 else 2)
    click.echo(json.dumps(body, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
