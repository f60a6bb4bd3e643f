"""Runtime settings of the live pipeline: where the services are, topic names, batching.

Each setting comes from an `ENGAGE_*` environment variable (CLI flags set the same
names), falling back to the running local stack (`engage stack up`) for the Kafka and
Redis addresses. A bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\Z")


class SettingsError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"setting {name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str
    redis_url: str
    app_id: str = "engagement-scorer"
    key_prefix: str = "eng"
    events_topic: str = "engagement.events"
    dlq_topic: str = "engagement.events.dlq"
    scores_topic: str = "engagement.scores"
    alerts_topic: str = "engagement.alerts"
    partitions: int = 4
    events_retention_ms: int = -1                 # forever: `engage replay` needs the history
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    alerts_retention_ms: int = 30 * 24 * 3600 * 1000
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 1000
    batch_within_s: float = 0.1
    kpi_interval_s: float = 5.0
    sweep_interval_s: float = 60.0
    alert_webhook_url: str = ""                   # empty: no webhook
    alert_webhook_max_backoff_s: float = 30.0
    alert_sink_port: int = 6067                   # `engage alert-sink`: /metrics and /healthz
    stall_after_s: float = 60.0                   # /readyz: lagging with no progress this long
    data_dir: str = ".engage/worker"


ENV = {f.name: f"ENGAGE_{f.name.upper()}" for f in fields(Settings)}
TOPIC_FIELDS = tuple(f.name for f in fields(Settings) if f.name.endswith("_topic"))


def prefixed_topics(prefix: str | None) -> dict[str, str]:
    """Topic-name settings with every default name behind `prefix` (isolation of runs and tests)."""
    if not prefix:
        return {}
    return {name: f"{prefix}{getattr(Settings, name)}" for name in TOPIC_FIELDS}


def load_settings(overrides: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from `overrides` (CLI flags), then ENGAGE_* variables, then the local stack."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for f in fields(Settings):
        value = (overrides or {}).get(f.name)
        if value is None:
            value = env.get(ENV[f.name])
        if value is not None and value != "":
            raw[f.name] = value
    if "kafka_bootstrap" not in raw or "redis_url" not in raw:
        from streams import stack

        running = stack.Stack.load()
        if running is not None:
            raw.setdefault("kafka_bootstrap", running.services["kafka"].address)
            raw.setdefault("redis_url", running.services["redis"].address)
    for required in ("kafka_bootstrap", "redis_url"):
        if required not in raw:
            raise SettingsError(ENV[required], "not set and no local stack runs (try `engage stack up`)")
    return _validate(raw)


def _validate(raw: dict[str, object]) -> Settings:
    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name not in raw:
            continue
        name, value = ENV[f.name], raw[f.name]
        if f.name.endswith("_retention_ms"):
            values[f.name] = _number(name, value, int, -1, 2**62)
            if values[f.name] in range(0, 60_000):
                raise SettingsError(name, "must be -1 (forever) or at least 60000 ms")
        elif f.type in ("int", int):
            values[f.name] = _number(name, value, int, 1, 65535 if f.name.endswith("_port") else 1_000_000)
        elif f.type in ("float", float):
            values[f.name] = _number(name, value, float, 0.001, 86400.0)
        else:
            text = str(value)
            if f.name.endswith("_topic") or f.name in ("app_id", "key_prefix"):
                if not _NAME.match(text) or (f.name == "key_prefix" and ("{" in text or ":" in text)):
                    raise SettingsError(name, f"letters, digits, '.', '_' and '-' only (got {text!r})")
            if f.name == "alert_webhook_url" and not text.startswith(("http://", "https://")):
                raise SettingsError(name, f"must be an http:// or https:// URL (got {text!r})")
            if f.name == "redis_url" and not text.startswith(("redis://", "rediss://", "unix://")):
                raise SettingsError(name, f"must be a redis://, rediss:// or unix:// URL (got {text!r})")
            if f.name == "kafka_bootstrap":
                text = text.removeprefix("kafka://")
                if not all(re.match(r"^[^:\s]+:\d{1,5}\Z", part) for part in text.split(",")):
                    raise SettingsError(name, f"must be host:port[,host:port] (got {text!r})")
            values[f.name] = text
    return Settings(**values)  # type: ignore[arg-type]


def _number(name: str, value: object, kind: type, low: float, high: float) -> int | float:
    try:
        number = kind(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        raise SettingsError(name, f"must be a {'whole ' if kind is int else ''}number (got {value!r})") from None
    if isinstance(value, float) and kind is int and value != int(value):
        raise SettingsError(name, f"must be a whole number (got {value!r})")
    if not low <= number <= high:
        raise SettingsError(name, f"must be within {low:g}..{high:g} (got {value!r})")
    return number
