"""The `engage` command line.

One module for every command, so `engage --help` and this file read alike (hence its length);
each command only parses its flags and calls the module that does the work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from scoring.config import Config, ConfigError, load_config
from scoring.timeutil import format_duration

if TYPE_CHECKING:
    from streams.settings import Settings


def _load(config_path: str | None) -> Config:
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
    ctx.obj = {"config_path": config_path}


@main.command()
@click.option("--offline", is_flag=True,
              help="No services: run the pure core over generated traffic on a simulated clock.")
@click.option("--customers", type=click.IntRange(1, 10_000_000), default=600, show_default=True)
@click.option("--accounts", type=click.IntRange(1, 1_000_000), default=60, show_default=True)
@click.option("--events", type=click.IntRange(1, 100_000_000), default=80000, show_default=True,
              help="Offline: events to score.")
@click.option("--days", type=click.IntRange(1, 3650), default=45, show_default=True,
              help="Offline: simulated days the events are spread over.")
@click.option("--backfill", type=click.IntRange(0, 10_000_000), default=60000, show_default=True,
              help="Live: history events (last 40 days) sent before the live traffic.")
@click.option("--rate", type=click.FloatRange(1, 1_000_000), default=200.0, show_default=True,
              help="Live: events per second.")
@click.option("--duration", type=click.FloatRange(0, 86400), default=60.0, show_default=True,
              help="Live: seconds of live traffic (0 = until Ctrl-C).")
@click.option("--web-port", type=click.IntRange(1, 65535), default=None, help="Live: worker HTTP port (default: free).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def demo(ctx: click.Context, offline: bool, customers: int, accounts: int, events: int, days: int, backfill: int,
         rate: float, duration: float, web_port: int | None, seed: int) -> None:
    """The whole product on this machine: local Kafka + Redis, a worker, generated traffic, live KPIs."""
    from streams.demo import DemoSettings, LiveDemoSettings, run_live, run_offline

    config = _load(ctx.obj["config_path"])
    if offline:
        run_offline(config, DemoSettings(customers=customers, accounts=accounts, events=events, days=days,
                                         seed=seed), click.echo)
        return
    from devstack.stack import StackError

    try:
        run_live(ctx.obj["config_path"], LiveDemoSettings(customers=customers, accounts=accounts, backfill=backfill,
                                                          rate=rate, duration_s=duration, seed=seed,
                                                          web_port=web_port), click.echo)
    except (StackError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def config() -> None:
    """Inspect and check scoring configuration."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate a config file; exit 0 when it is good, 2 with the offending key when not."""
    if not Path(path).is_file():
        raise click.UsageError(f"config file not found: {path}")
    _load(path)
    click.echo(f"{path}: ok")


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective configuration as JSON: every key (and, under `derived`, the bucket retention)."""
    from scoring.config import config_mapping

    c = _load(ctx.obj["config_path"])
    shown = {**config_mapping(c), "derived": {"retention": format_duration(c.retention_ms)}}
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")


@config.command("settings")
def config_settings() -> None:
    """Print the effective runtime settings (ENGAGE_*) as JSON; secrets and URL passwords redacted."""
    json.dump(_settings().redacted(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def _settings(**flags: object):
    from devstack.stack import local_addresses
    from streams.settings import SettingsError, load_settings

    try:
        return load_settings({k: v for k, v in flags.items() if v is not None}, defaults=local_addresses())
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
_NO_REDIS = {"redis_username": "", "redis_password": "", "redis_ssl_ca_file": "", "redis_cluster": ""}
_NO_KAFKA = {"kafka_security_protocol": "", "kafka_sasl_mechanism": "", "kafka_username": "", "kafka_password": "",
             "kafka_ssl_cafile": ""}

_service_options = [
    click.option("--kafka", "kafka_bootstrap", help="Kafka bootstrap host:port. Env: ENGAGE_KAFKA_BOOTSTRAP "
                 "(default: the local stack)."),
    click.option("--redis", "redis_url", help="Redis URL. Env: ENGAGE_REDIS_URL (default: the local stack)."),
    click.option("--topic-prefix", help="Prefix for every topic name (isolation), e.g. 'test1.'"),
]


def service_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_service_options):
        fn = option(fn)
    return fn


def _topic_names(topic_prefix: str | None) -> dict[str, str]:
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
    config = _load(ctx.obj["config_path"])
    settings = _settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, app_id=app_id,
                         key_prefix=key_prefix, web_port=web_port, partitions=partitions,
                         **_topic_names(topic_prefix))
    from streams.app import create_app, run_worker
    from streams.settings import SettingsError
    from streams.topics import cluster_replication, ensure_topics

    try:
        app, _ = create_app(settings, config)   # touches no service yet
    except SettingsError as exc:   # chunked consumption on an unvalidated faust-streaming
        raise click.UsageError(str(exc)) from None
    click.echo(f"engage worker: settings {json.dumps(settings.redacted())}", err=True)
    _check_layout(settings)
    try:
        ensure_topics(settings)
        # Faust's own topics (the assignor's) replicated like ours
        app.conf.topic_replication_factor = cluster_replication(settings)[0]
    except SettingsError as exc:   # ENGAGE_TOPIC_REPLICATION above the brokers
        raise click.UsageError(str(exc)) from None
    run_worker(app, loglevel)


def _check_layout(settings: Settings, claim: bool = True) -> None:
    """One line and exit 1 when the Redis may evict keys, or the key prefix holds state in a layout
    this version does not write (`claim`: mark an empty prefix as this layout's)."""
    import asyncio

    from streams.store import EvictionPolicyError, LayoutError, RedisStore

    async def check() -> None:
        store = RedisStore.from_settings(settings)
        try:
            await store.check_eviction_policy()
            await store.check_layout(claim)
        finally:
            await store.close()

    try:
        asyncio.run(check())
    except (EvictionPolicyError, LayoutError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command("api")
@click.option("--redis", "redis_url", help="Redis URL. Env: ENGAGE_REDIS_URL (default: the local stack).")
@click.option("--key-prefix", help="Redis key prefix of the workers it serves. Env: ENGAGE_KEY_PREFIX.")
@click.option("--web-port", type=int, help="HTTP port. Env: ENGAGE_WEB_PORT.")
@click.pass_context
def api_command(ctx: click.Context, redis_url, key_prefix, web_port) -> None:  # type: ignore[no-untyped-def]
    """Serve the read API and the live page from Redis, in a process of its own (no Kafka)."""
    import logging

    from streams.api_server import run_api

    config = _load(ctx.obj["config_path"])
    settings = _settings(redis_url=redis_url, key_prefix=key_prefix, web_port=web_port, kafka_bootstrap="unused:0",
                         **_NO_KAFKA)
    click.echo(f"engage api: settings {json.dumps(settings.redacted())}", err=True)
    _check_layout(settings, claim=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"engage api: serving http://{settings.web_host}:{settings.web_port}/", err=True)
    run_api(settings, config)


@main.command("alert-sink")
@service_options
@click.option("--url", "alert_webhook_url", help="Webhook receiving the alerts. Env: ENGAGE_ALERT_WEBHOOK_URL.")
@click.option("--app-id", help="Group is '<app-id>-alert-sink'. Env: ENGAGE_APP_ID.")
@click.option("--port", "alert_sink_port", type=int, help="HTTP port of /metrics and /healthz. "
              "Env: ENGAGE_ALERT_SINK_PORT (default 6067).")
def alert_sink(kafka_bootstrap, redis_url, topic_prefix, alert_webhook_url, app_id,
               alert_sink_port) -> None:  # type: ignore[no-untyped-def]
    """Deliver per-customer alerts to a webhook (Slack-compatible JSON), retrying until accepted."""
    import asyncio
    import logging

    from streams.alert_sink import serve

    settings = _settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url or "redis://unused", **_NO_REDIS,
                         alert_webhook_url=alert_webhook_url, app_id=app_id, alert_sink_port=alert_sink_port,
                         **_topic_names(topic_prefix))
    if not settings.alert_webhook_url:
        raise click.UsageError("setting ENGAGE_ALERT_WEBHOOK_URL (--url): required by alert-sink")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(settings))


@main.command()
@service_options
@click.option("--partitions", type=int, help="Partitions of new topics. Env: ENGAGE_PARTITIONS.")
def topics(kafka_bootstrap, redis_url, topic_prefix, partitions) -> None:  # type: ignore[no-untyped-def]
    """Create the events, DLQ, scores (compacted) and alerts topics."""
    from streams.settings import SettingsError
    from streams.topics import ensure_topics

    settings = _settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url or "redis://unused", **_NO_REDIS,
                         partitions=partitions, **_topic_names(topic_prefix))
    try:
        created = ensure_topics(settings)
    except SettingsError as exc:   # ENGAGE_TOPIC_REPLICATION above the brokers
        raise click.UsageError(str(exc)) from None
    for name, state in created.items():
        click.echo(f"{name}: {state}")


@main.command()
@service_options
@click.option("--count", type=click.IntRange(1, 1_000_000_000), default=10000, show_default=True)
@click.option("--rate", type=click.FloatRange(0.001, 10_000_000), default=None,
              help="Events per second (event times follow the clock); default: as fast as possible, "
                   "with event times spread over --history.")
@click.option("--history", default="7d", show_default=True, help="Unpaced: event times spread over the last ...")
@click.option("--customers", type=click.IntRange(1, 100_000_000), default=1000, show_default=True)
@click.option("--accounts", type=click.IntRange(1, 10_000_000), default=100, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--id-prefix", default="", help="Prefix for customer/account/event ids (isolation).")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="Events per message: above 1, batch messages of --shape (grouped per partition).")
@click.option("--shape", type=click.Choice(["array", "ndjson"]), default="array", show_default=True,
              help="Batch message format: a JSON array, or NDJSON (one event per line).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(kafka_bootstrap, redis_url, topic_prefix, count, rate, history, customers, accounts, seed, id_prefix,
             batch, shape, quiet) -> None:  # type: ignore[no-untyped-def]
    """Produce realistic synthetic events (Zipf activity, every type, some duplicates, late and bad ones)."""
    from streams.traffic import TrafficSettings
    from scoring.timeutil import parse_duration
    from streams.producer import GenerateOptions, generate as run_generate

    try:
        history_ms = parse_duration(history)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--history") from None
    if len(id_prefix) > 64 or not id_prefix.isprintable() or any(c in id_prefix for c in "{} \t"):
        # ids become Redis hash tags: a prefix the validator refuses would dead-letter every event
        raise click.BadParameter("at most 64 printable characters, no braces or spaces", param_hint="--id-prefix")
    settings = _settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url or "redis://unused", **_NO_REDIS,
                         **_topic_names(topic_prefix))
    sent = run_generate(settings, GenerateOptions(
        count=count, rate=rate, history_ms=history_ms, progress=not quiet, batch=batch, shape=shape,
        traffic=TrafficSettings(customers=customers, accounts=accounts, seed=seed, prefix=id_prefix)))
    click.echo(json.dumps(dict(sorted(sent.items()))))


@main.command()
@service_options
@click.option("--key-prefix", help="Redis key prefix to rebuild. Env: ENGAGE_KEY_PREFIX.")
@click.option("--fresh/--no-fresh", default=True, show_default=True,
              help="Delete the prefix's keys first (a rebuild from scratch).")
@click.pass_context
def replay(ctx: click.Context, kafka_bootstrap, redis_url, topic_prefix, key_prefix, fresh) -> None:  # type: ignore[no-untyped-def]
    """Rebuild Redis from the events topic, from the earliest offset. Stop the workers first."""
    import asyncio

    from streams.replay import replay as run_replay

    config = _load(ctx.obj["config_path"])
    settings = _settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url, key_prefix=key_prefix,
                         **_topic_names(topic_prefix))
    try:
        count = asyncio.run(run_replay(settings, config, fresh,
                                       progress=lambda n: click.echo(f"\rreplayed {n:,} messages", nl=False, err=True)))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"\nreplayed {count:,} messages from {settings.events_topic} into prefix {settings.key_prefix!r}",
               err=True)


@main.command()
@click.argument("customer_id")
@click.option("--redis", "redis_url", help="Redis URL. Env: ENGAGE_REDIS_URL (default: the local stack).")
@click.option("--key-prefix", help="Redis key prefix. Env: ENGAGE_KEY_PREFIX.")
@click.option("--as-of", type=click.IntRange(0), default=None, help="Epoch ms (default: now).")
@click.pass_context
def score(ctx: click.Context, customer_id: str, redis_url, key_prefix, as_of) -> None:  # type: ignore[no-untyped-def]
    """Print a customer's scores and breakdown as JSON (from Redis, scored by the core)."""
    import asyncio
    import time

    from streams import api
    from streams.store import RedisStore

    config = _load(ctx.obj["config_path"])
    settings = _settings(redis_url=redis_url, key_prefix=key_prefix, kafka_bootstrap="unused:0", **_NO_KAFKA)

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


@main.group()
def stack() -> None:
    """The local Kafka/Redis/Prometheus stack (no Docker needed)."""


_secure_option = click.option("--secure", is_flag=True, help="The secure stack (Kafka SASL_SSL + SCRAM, Redis TLS + "
                              "ACL user), in its own directory next to the plain one.")


@stack.command("up")
@click.option("--prometheus", is_flag=True, help="Also start Prometheus (Debian package).")
@click.option("--redis-cluster", is_flag=True, help="Also start a Redis Cluster (three masters, no replicas); "
              "its startup node is redis_cluster_url (workers: ENGAGE_REDIS_CLUSTER=true).")
@click.option("--brokers", type=click.Choice(["1", "3"]), default=None,
              help="Kafka brokers: 1 (the default for a new stack) or 3, a KRaft cluster (kafka-1..3) whose "
              "topics are replicated 3 times with min.insync.replicas=2. Default: what the running stack has.")
@_secure_option
def stack_up(prometheus: bool, redis_cluster: bool, brokers: str | None, secure: bool) -> None:
    """Start the local stack, or reuse the running one; print its addresses (and, --secure, client_env)."""
    from devstack import stack as local

    if redis_cluster and secure:
        raise click.UsageError("--redis-cluster: the local Redis Cluster is plain only, not with --secure")
    if brokers == "3" and secure:
        raise click.UsageError("--brokers 3: the three-broker Kafka is plain only, not with --secure")
    try:
        running = local.up(local.secure_stack_dir() if secure else None, prometheus=prometheus,
                           log=lambda line: click.echo(line, err=True), secure=secure,
                           brokers=int(brokers) if brokers else None)
        if redis_cluster:
            running = local.cluster_up(Path(running.directory), log=lambda line: click.echo(line, err=True))
    except local.StackError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(running.to_json(), indent=2))


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the services' data.")
@_secure_option
def stack_down(purge: bool, secure: bool) -> None:
    """Stop the local stack."""
    from devstack import stack as local

    local.down(local.secure_stack_dir() if secure else None, purge=purge, log=lambda line: click.echo(line, err=True))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: addresses and health.")
@_secure_option
def stack_status(as_json: bool, secure: bool) -> None:
    """Show whether the local stack runs and where; exit 1 when it does not."""
    from devstack import stack as local

    info = local.status(local.secure_stack_dir() if secure else None)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        if not info["services"]:
            click.echo(f"no stack in {info['directory']}")
        for name, service in info["services"].items():
            state = "up" if info["healthy"][name] else "DOWN"
            click.echo(f"{name:<11} {state:<5} {service['address']}")
    if not info["running"]:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
