"""The `engage` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from scoring.config import Config, ConfigError, load_config
from scoring.timeutil import format_duration


def _load(config_path: str | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", envvar="ENGAGE_CONFIG", type=click.Path(dir_okay=False),
              help="Scoring config (TOML) over the defaults. Env: ENGAGE_CONFIG.")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Streaming, real-time customer engagement scorer."""
    ctx.obj = {"config_path": config_path}


@main.command()
@click.option("--offline", is_flag=True, default=True, show_default=True,
              help="Run the pure core over generated traffic on a simulated clock (no services).")
@click.option("--customers", type=click.IntRange(1, 10_000_000), default=600, show_default=True)
@click.option("--accounts", type=click.IntRange(1, 1_000_000), default=60, show_default=True)
@click.option("--events", type=click.IntRange(1, 100_000_000), default=40000, show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=45, show_default=True,
              help="Simulated days the events are spread over.")
@click.option("--seed", type=int, default=7, show_default=True)
@click.pass_context
def demo(ctx: click.Context, offline: bool, customers: int, accounts: int, events: int, days: int, seed: int) -> None:
    """Score generated traffic and show live KPIs, leaderboards and alerts."""
    from streams.demo import DemoSettings, run_offline

    config = _load(ctx.obj["config_path"])
    run_offline(config, DemoSettings(customers=customers, accounts=accounts, events=events, days=days, seed=seed),
                click.echo)


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
    """Print the effective configuration as JSON."""
    c = _load(ctx.obj["config_path"])
    shown = {
        "scoring": {"window": format_duration(c.window_ms), "bucket": format_duration(c.bucket_ms),
                    "benchmark_cer": c.benchmark_cer,
                    "decay_half_life": format_duration(c.decay_half_life_ms) if c.decay_half_life_ms else "off"},
        "weights": dict(sorted(c.weights.items())),
        "targets": dict(sorted(c.targets.items())),
        "tiers": {"excellent": c.tier_excellent, "moderate": c.tier_moderate},
        "aer": {"window": format_duration(c.aer_window_ms), "activity_types": sorted(c.aer_activity_types),
                "low_below": c.aer_low_below, "high_above": c.aer_high_above},
        "activity_types": sorted(c.activity_types),
        "custom_types": sorted(c.custom_types),
        "time": {"allowed_lateness": format_duration(c.allowed_lateness_ms),
                 "max_future_skew": format_duration(c.max_future_skew_ms),
                 "dedup_horizon": format_duration(c.dedup_horizon_ms),
                 "retention": format_duration(c.retention_ms)},
    }
    json.dump(shown, sys.stdout, indent=2)
    sys.stdout.write("\n")


@main.group()
def stack() -> None:
    """The local Kafka/Redis/Prometheus stack (no Docker needed)."""


@stack.command("up")
@click.option("--prometheus", is_flag=True, help="Also start Prometheus (Debian package).")
def stack_up(prometheus: bool) -> None:
    """Start the local stack, or reuse the running one; print its addresses."""
    from streams import stack as local

    try:
        running = local.up(prometheus=prometheus, log=lambda line: click.echo(line, err=True))
    except local.StackError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(running.to_json(), indent=2))


@stack.command("down")
@click.option("--purge", is_flag=True, help="Also delete the services' data.")
def stack_down(purge: bool) -> None:
    """Stop the local stack."""
    from streams import stack as local

    local.down(purge=purge, log=lambda line: click.echo(line, err=True))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: addresses and health.")
def stack_status(as_json: bool) -> None:
    """Show whether the local stack runs and where; exit 1 when it does not."""
    from streams import stack as local

    info = local.status()
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
