"""The checkout's `engage`: the product's commands, the development commands, local defaults.

`./engage` runs this. It adds `stack` (the local Kafka, Redis and Prometheus), `demo` and
`generate` to the product's command line (`streams.cli`), and passes the running local stack's
addresses in as the defaults of `--kafka` and `--redis`. The product never imports this package:
an installed `engage` (the image, a wheel) has the product's commands only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from streams.cli import (NO_REDIS, load_config_or_usage, main, service_options, settings_from,
                         topic_names)


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
    from devstack.demo import DemoSettings, LiveDemoSettings, run_live, run_offline

    config = load_config_or_usage(ctx.obj["config_path"])
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
@click.option("--format", "message_format", type=click.Choice(["engage", "segment"]), default="engage",
              show_default=True, help="Each event in the product's own JSON, or as a Segment-spec track message "
                                      "(named by the shipped [mapping]).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(kafka_bootstrap, redis_url, topic_prefix, count, rate, history, customers, accounts, seed, id_prefix,
             batch, shape, message_format, quiet) -> None:  # type: ignore[no-untyped-def]
    """Produce realistic synthetic events (Zipf activity, every type, some duplicates, late and bad ones)."""
    from devstack.traffic import TrafficSettings
    from scoring.timeutil import parse_duration
    from devstack.producer import GenerateOptions, generate as run_generate

    try:
        history_ms = parse_duration(history)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--history") from None
    if len(id_prefix) > 64 or not id_prefix.isprintable() or any(c in id_prefix for c in "{} \t"):
        # ids become Redis hash tags: a prefix the validator refuses would dead-letter every event
        raise click.BadParameter("at most 64 printable characters, no braces or spaces", param_hint="--id-prefix")
    settings = settings_from(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url or "redis://unused", **NO_REDIS,
                         **topic_names(topic_prefix))
    sent = run_generate(settings, GenerateOptions(
        count=count, rate=rate, history_ms=history_ms, progress=not quiet, batch=batch, shape=shape,
        segment=message_format == "segment", traffic=TrafficSettings(customers=customers, accounts=accounts, seed=seed, prefix=id_prefix)))
    click.echo(json.dumps(dict(sorted(sent.items()))))


@main.group()
def stack() -> None:
    """The local Kafka/Redis/Prometheus stack (no Docker needed)."""


_secure_option = click.option("--secure", is_flag=True, help="The secure stack (Kafka SASL_SSL + SCRAM, Redis TLS + "
                              "ACL user), in its own directory next to the plain one.")


@stack.command("up")
@click.option("--prometheus", is_flag=True, help="Also start Prometheus (Debian package).")
@click.option("--redis-cluster", is_flag=True, help="Also start a Redis Cluster (three masters); "
              "its startup node is redis_cluster_url (workers: ENGAGE_REDIS_CLUSTER=true).")
@click.option("--redis-replicas", type=click.IntRange(0, 1), default=0, show_default=True,
              help="With --redis-cluster: replicas per master (redis-cluster-4..6).")
@click.option("--redis-sentinel", is_flag=True, help="Also start a Redis primary and replica watched by three "
              "Sentinels; prints redis_sentinels and redis_sentinel_master (workers: ENGAGE_REDIS_SENTINELS, "
              "ENGAGE_REDIS_SENTINEL_MASTER).")
@click.option("--brokers", type=click.Choice(["1", "3"]), default=None,
              help="Kafka brokers: 1 (the default for a new stack) or 3, a KRaft cluster (kafka-1..3) whose "
              "topics are replicated 3 times with min.insync.replicas=2. Default: what the running stack has.")
@_secure_option
def stack_up(prometheus: bool, redis_cluster: bool, redis_replicas: int, redis_sentinel: bool, brokers: str | None,
             secure: bool) -> None:
    """Start the local stack, or reuse the running one; print its addresses (and, --secure, client_env)."""
    from devstack import stack as local

    if redis_replicas and not redis_cluster:
        raise click.UsageError("--redis-replicas: only with --redis-cluster")
    if redis_sentinel and secure:
        raise click.UsageError("--redis-sentinel: the local Sentinel setup is plain only, not with --secure")
    if redis_cluster and secure:
        raise click.UsageError("--redis-cluster: the local Redis Cluster is plain only, not with --secure")
    if brokers == "3" and secure:
        raise click.UsageError("--brokers 3: the three-broker Kafka is plain only, not with --secure")
    try:
        running = local.up(local.secure_stack_dir() if secure else None, prometheus=prometheus,
                           log=lambda line: click.echo(line, err=True), secure=secure,
                           brokers=int(brokers) if brokers else None)
        if redis_cluster:
            running = local.cluster_up(Path(running.directory), log=lambda line: click.echo(line, err=True),
                                       replicas=redis_replicas)
        if redis_sentinel:
            running = local.sentinel_up(Path(running.directory), log=lambda line: click.echo(line, err=True))
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


def run() -> None:
    """The `./engage` entry point: every command, with the local stack's addresses as defaults."""
    from devstack.stack import local_addresses

    main.main(obj={"address_defaults": local_addresses}, prog_name="engage")


if __name__ == "__main__":  # pragma: no cover
    run()
