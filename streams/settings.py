"""Runtime settings of the live pipeline: where the services are, topic names, batching.

Each setting comes from an `ENGAGE_*` environment variable (CLI flags set the same
names); the Kafka and Redis addresses fall back to defaults the caller passes in (the
checkout's `./engage` passes the running local stack's). A bad value stops start-up with a
message naming the variable.

Secrets (`SECRETS`) may instead come from a file named by `ENGAGE_<NAME>_FILE` (one
trailing newline stripped). They never appear in `repr(settings)`, in `redacted()` (what
the CLI and the logs show) or in an error message; neither does a password inside the
Redis URL. Longer than most modules because every setting is declared and validated here.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}\Z")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,512}\Z")   # RFC 6750 b64token characters
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
SECRETS = ("kafka_password", "redis_password", "api_token", "api_write_token")
# may also come from ENGAGE_<NAME>_FILE: the secrets, and the webhook URL (a Slack-style URL is its own secret)
FROM_FILE = (*SECRETS, "alert_webhook_url", "alert_webhooks")
CONSUMPTION_PATHS = ("chunked", "stock")
MAX_REPLICATION = 16
MAX_API_PROCESSES = 64
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class SettingsError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"setting {name}: {message}")
        self.name = name


@dataclass(frozen=True, repr=False)
class Settings:
    kafka_bootstrap: str
    redis_url: str
    redis_cluster: bool = False                   # redis_url is a node of a Redis Cluster (streams/state/redis_client.py)
    redis_sentinels: str = ""                     # host:port,...: the primary is whichever Redis Sentinel names (redis_url: its database)
    redis_sentinel_master: str = ""               # the primary's name at the Sentinels
    redis_min_replicas: int = 0                   # a write counts once this many replicas have it (streams/state/replicas.py)
    redis_replica_timeout_s: float = 2.0          # ... within this long; else the batch is retried and /readyz is 503
    app_id: str = "engagement-scorer"
    key_prefix: str = "eng"
    events_topic: str = "engagement.events"
    dlq_topic: str = "engagement.events.dlq"
    scores_topic: str = "engagement.scores"
    alerts_topic: str = "engagement.alerts"
    partitions: int = 4
    topic_replication: str = "auto"               # replicas of new topics: auto (min(3, brokers)) or 1..MAX_REPLICATION
    events_retention_ms: int = -1                 # forever: `engage replay` needs the history
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000
    alerts_retention_ms: int = 30 * 24 * 3600 * 1000
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_size: int = 1000
    batch_within_s: float = 0.1                   # stock consumption: wait this long for a batch to fill
    consumption: str = "chunked"                  # chunked (streams/worker/kafka_transport.py) or stock (Faust's per-message path)
    kpi_interval_s: float = 5.0
    sweep_interval_s: float = 5.0
    alert_webhook_url: str = ""                   # empty: no webhook
    alert_webhooks: str = ""                      # name=url,... the webhooks [alerts.routes] name (URLs are secrets)
    alert_webhook_max_backoff_s: float = 30.0
    alert_sink_port: int = 6067                   # `engage alert-sink`: /metrics and /healthz
    stall_after_s: float = 60.0                   # /readyz: lagging with no progress this long
    outbox_grace_s: float = 30.0                  # an output unacknowledged this long is republished (outbox)
    kafka_session_timeout_s: float = 10.0         # a silent worker's partitions move to the others after this
    group_instance_id: str = ""                   # static group membership (KIP-345): a restart in place keeps its partitions
    state_cache_customers: int = 10_000           # customers a worker keeps as it last wrote them (0: none)
    api_processes: int = 1                        # `engage api`: processes serving its port (streams/serve/supervisor.py)
    data_dir: str = ".engage/worker"
    # security (docs/security.md); the secrets are in SECRETS
    kafka_security_protocol: str = "PLAINTEXT"    # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"   # with SASL_*: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN
    kafka_username: str = ""
    kafka_password: str = ""
    kafka_ssl_cafile: str = ""                    # with SSL/SASL_SSL: CA bundle (PEM); empty: the system's
    redis_username: str = ""                      # an ACL user (with redis_password)
    redis_password: str = ""
    redis_ssl_ca_file: str = ""                   # with rediss://: CA bundle (PEM); empty: the system's
    api_token: str = ""                           # bearer token of the worker's API; empty: no auth
    api_write_token: str = ""                     # bearer token of the alert write routes; empty: writes off
    metrics_auth: bool = False                    # /metrics needs the token too

    def redacted(self) -> dict[str, object]:
        """Every setting, fit to show: secrets as '***' (or '' when unset), URL passwords hidden."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRETS:
                value = "***" if value else ""
            elif f.name == "redis_url":
                value = redact_url(value)
            elif f.name == "alert_webhook_url":
                value = redact_webhook(value)
            elif f.name == "alert_webhooks":
                value = ",".join(f"{name}={redact_webhook(url)}" for name, url in named_webhooks(value).items())
            shown[f.name] = value
        return shown

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.redacted().items()) + ")"


ENV = {f.name: f"ENGAGE_{f.name.upper()}" for f in fields(Settings)}
FILE_ENV = {name: f"{ENV[name]}_FILE" for name in FROM_FILE}


def named_webhooks(text: str) -> dict[str, str]:
    """ENGAGE_ALERT_WEBHOOKS, `name=url,name=url`, as a mapping; ValueError naming the bad item (URL hidden)."""
    found: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not _WEBHOOK_NAME.match(name.strip()) or not url.strip().startswith(("http://", "https://")):
            raise ValueError(f"each item is name=http(s)://... with a lower-case name (got {name.strip()[:64]!r}=...)")
        found[name.strip()] = url.strip()
    return found


_WEBHOOK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def redact_webhook(url: str) -> str:
    """Only the scheme and host of a webhook URL: its path and query are often the credential."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    hidden = rest[len(rest.split("/", 1)[0].split("?", 1)[0]):]
    return f"{scheme}{sep}{host}{'/***' if hidden else ''}" if sep else ("***" if url else "")


def redact_url(url: str) -> str:
    """`url` with any password replaced by '***' (userinfo and a `password=` query parameter).

    Everything up to the last '@' after the scheme counts as userinfo, so a password
    holding an unescaped '/', '?' or '@' is hidden too (at worst more than the password is).
    """
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        if ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:***@{host}"
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", f"{scheme}{sep}{rest}")
TOPIC_FIELDS = tuple(f.name for f in fields(Settings) if f.name.endswith("_topic"))


def prefixed_topics(prefix: str | None) -> dict[str, str]:
    """Topic-name settings with every default name behind `prefix` (isolation of runs and tests)."""
    if not prefix:
        return {}
    return {name: f"{prefix}{getattr(Settings, name)}" for name in TOPIC_FIELDS}


def load_settings(overrides: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None,
                  defaults: Mapping[str, str] | None = None) -> Settings:
    """Settings from `overrides` (CLI flags), then ENGAGE_* variables, then `defaults`.

    `defaults` are addresses to use when neither names one: `kafka_bootstrap`, `redis_url` and,
    with `redis_cluster`, `redis_cluster_url` (the CLI passes the local stack's in).
    """
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    for f in fields(Settings):
        value = (overrides or {}).get(f.name)
        if value is None:
            value = env.get(ENV[f.name])
            if f.name in FROM_FILE:
                value = _secret(f.name, value, env)
        if value is not None and value != "":
            raw[f.name] = value
    cluster = _flag(ENV["redis_cluster"], raw["redis_cluster"]) if "redis_cluster" in raw else False
    fallback = dict(defaults or {})
    if cluster:
        fallback["redis_url"] = fallback.pop("redis_cluster_url", None)
    for name in ("kafka_bootstrap", "redis_url"):
        if name not in raw and fallback.get(name):
            raw[name] = fallback[name]
    if raw.get("redis_sentinels") and "redis_url" not in raw:
        raw["redis_url"] = "redis://localhost/0"     # the host is the Sentinels' answer; only the database is read
    for required in ("kafka_bootstrap", "redis_url"):
        if required not in raw and defaults is None:
            raise SettingsError(ENV[required], "not set")
        if required not in raw:
            up = "./engage stack up --redis-cluster" if cluster and required == "redis_url" else "./engage stack up"
            raise SettingsError(ENV[required], f"not set and no local stack runs (try `{up}`)")
    return _validate(raw)


def _secret(name: str, value: str | None, env: Mapping[str, str]) -> str | None:
    """A secret from ENGAGE_X, or from the file ENGAGE_X_FILE names (never both)."""
    path = env.get(FILE_ENV[name])
    if not path:
        return value
    if value:
        raise SettingsError(ENV[name], f"set either {ENV[name]} or {FILE_ENV[name]}, not both")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(FILE_ENV[name], f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise SettingsError(FILE_ENV[name], f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise SettingsError(FILE_ENV[name], f"{path} is empty")
    return text


def _validate(raw: dict[str, object]) -> Settings:
    values: dict[str, object] = {}
    for f in fields(Settings):
        if f.name not in raw:
            continue
        name, value = ENV[f.name], raw[f.name]
        if f.name in SECRETS:
            values[f.name] = _secret_value(f.name, name, value)
        elif f.type in ("bool", bool):
            values[f.name] = _flag(name, value)
        elif f.name.endswith("_retention_ms"):
            values[f.name] = _number(name, value, int, -1, 2**62)
            if values[f.name] in range(0, 60_000):
                raise SettingsError(name, "must be -1 (forever) or at least 60000 ms")
        elif f.name == "state_cache_customers":
            values[f.name] = _number(name, value, int, 0, 100_000_000)
        elif f.name == "redis_min_replicas":
            values[f.name] = _number(name, value, int, 0, MAX_REPLICATION)
        elif f.name == "api_processes":
            values[f.name] = _number(name, value, int, 1, MAX_API_PROCESSES)
        elif f.type in ("int", int):
            values[f.name] = _number(name, value, int, 1, 65535 if f.name.endswith("_port") else 1_000_000)
        elif f.name == "kafka_session_timeout_s":   # the broker's least (6 s); at most Faust's request timeout
            values[f.name] = _number(name, value, float, 6.0, 90.0)
        elif f.type in ("float", float):
            values[f.name] = _number(name, value, float, 0.001, 86400.0)
        else:
            text = str(value)
            if f.name.endswith("_topic") or f.name in ("app_id", "key_prefix", "group_instance_id"):
                if not _NAME.match(text) or (f.name == "key_prefix" and ("{" in text or ":" in text)):
                    raise SettingsError(name, f"letters, digits, '.', '_' and '-' only (got {text!r})")
            if f.name == "alert_webhook_url" and not text.startswith(("http://", "https://")):
                raise SettingsError(name, f"must be an http:// or https:// URL (got {redact_webhook(text)!r})")
            if f.name == "alert_webhooks":
                try:
                    named_webhooks(text)
                except ValueError as exc:
                    raise SettingsError(name, str(exc)) from None
            if f.name == "redis_url" and not text.startswith(("redis://", "rediss://", "unix://")):
                raise SettingsError(name, f"must be a redis://, rediss:// or unix:// URL (got {redact_url(text)!r})")
            if f.name == "kafka_security_protocol":
                text = text.upper()
                if text not in KAFKA_PROTOCOLS:
                    raise SettingsError(name, f"must be one of {', '.join(KAFKA_PROTOCOLS)} (got {value!r})")
            if f.name == "topic_replication":
                text = text.strip().lower()
                if text != "auto" and not (text.isdigit() and 1 <= int(text) <= MAX_REPLICATION):
                    raise SettingsError(name, f"must be auto or a whole number 1..{MAX_REPLICATION} (got {value!r})")
                text = text if text == "auto" else str(int(text))
            if f.name == "consumption" and text not in CONSUMPTION_PATHS:
                raise SettingsError(name, f"must be one of {', '.join(CONSUMPTION_PATHS)} (got {value!r})")
            if f.name == "kafka_sasl_mechanism":
                text = text.upper()
                if text not in KAFKA_SASL_MECHANISMS:
                    raise SettingsError(name, f"must be one of {', '.join(KAFKA_SASL_MECHANISMS)} (got {value!r})")
            if f.name in ("kafka_ssl_cafile", "redis_ssl_ca_file"):
                _ca_file(name, text)
            if f.name in ("kafka_username", "redis_username") and (
                    len(text) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in text)):
                raise SettingsError(name, "must be 1..256 characters without control characters")
            if f.name == "web_host" and not re.match(r"^[A-Za-z0-9.:_-]{1,253}\Z", text):
                raise SettingsError(name, f"must be a host name or IP address to bind (got {text!r})")
            if f.name == "data_dir":
                _directory(name, text)
            if f.name == "redis_sentinels" and not all(re.match(r"^[^:\s,]+:\d{1,5}\Z", part)
                                                       for part in text.split(",")):
                raise SettingsError(name, f"must be host:port[,host:port] (got {text!r})")
            if f.name == "redis_sentinel_master" and not _NAME.match(text):
                raise SettingsError(name, f"letters, digits, '.', '_' and '-' only (got {text!r})")
            if f.name == "kafka_bootstrap":
                text = text.removeprefix("kafka://")
                if not all(re.match(r"^[^:\s]+:\d{1,5}\Z", part) for part in text.split(",")):
                    raise SettingsError(name, f"must be host:port[,host:port] (got {text!r})")
            values[f.name] = text
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_security(settings, raw)
    return settings


def _directory(name: str, text: str) -> None:
    """A directory the worker can create or use: checked here, not as a traceback at start-up."""
    path = Path(text).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise SettingsError(name, f"{existing} is not a directory (got {text!r})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(name, f"{existing} is not writable (got {text!r})")


def _secret_value(field_name: str, name: str, value: object) -> str:
    """A secret's own checks; the messages never contain the value."""
    text = str(value)
    if field_name in ("api_token", "api_write_token"):
        if not _TOKEN.match(text):
            raise SettingsError(name, "must be 16..512 characters of A-Z a-z 0-9 - . _ ~ + / = (value not shown)")
    elif len(text) > 4096 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise SettingsError(name, "must be at most 4096 characters without control characters (value not shown)")
    return text


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise SettingsError(name, f"must be true or false (1/0, yes/no, on/off; got {value!r})")


def _ca_file(name: str, path: str) -> None:
    if not Path(path).is_file():
        raise SettingsError(name, f"no such file: {path}")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise SettingsError(name, f"{path} is not a readable PEM CA certificate file ({exc})") from None


def _check_security(s: Settings, raw: Mapping[str, object]) -> None:
    """Combinations that would silently not do what was asked."""
    protocol = s.kafka_security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol in ("SSL", "SASL_SSL")
    if sasl:
        for key in ("kafka_username", "kafka_password"):
            if not getattr(s, key):
                also = f" (or {FILE_ENV[key]})" if key in FILE_ENV else ""
                raise SettingsError(ENV[key], f"required with {ENV['kafka_security_protocol']}={protocol}{also}")
    else:
        if s.kafka_username or s.kafka_password:
            raise SettingsError(ENV["kafka_security_protocol"], f"is {protocol}, but {ENV['kafka_username']} or "
                                f"{ENV['kafka_password']} is set: use SASL_SSL (or SASL_PLAINTEXT) to authenticate")
        if "kafka_sasl_mechanism" in raw:
            raise SettingsError(ENV["kafka_sasl_mechanism"], f"only used with SASL_SSL or SASL_PLAINTEXT "
                                f"({ENV['kafka_security_protocol']} is {protocol})")
    if s.kafka_ssl_cafile and not tls:
        raise SettingsError(ENV["kafka_ssl_cafile"], f"only used with SSL or SASL_SSL "
                            f"({ENV['kafka_security_protocol']} is {protocol})")
    try:
        parts = urlsplit(s.redis_url)
        url_user, url_password = parts.username, parts.password
        query = parse_qs(parts.query)
    except ValueError:
        url_user = url_password = None
        query = {}
    url_password = url_password or (query.get("password") or [None])[0]
    url_user = url_user or (query.get("username") or [None])[0]
    if s.redis_password and url_password:
        raise SettingsError(ENV["redis_password"], f"the URL in {ENV['redis_url']} holds a password already: "
                            "set only one of them")
    if s.redis_username and url_user:
        raise SettingsError(ENV["redis_username"], f"the URL in {ENV['redis_url']} names a user already: "
                            "set only one of them")
    if s.redis_username and not s.redis_password:
        raise SettingsError(ENV["redis_password"], f"required with {ENV['redis_username']} "
                            f"(or {FILE_ENV['redis_password']})")
    if s.redis_ssl_ca_file and not s.redis_url.startswith("rediss://"):
        raise SettingsError(ENV["redis_ssl_ca_file"], f"only used with a rediss:// URL in {ENV['redis_url']}")
    if s.redis_cluster:
        if s.redis_url.startswith("unix://"):
            raise SettingsError(ENV["redis_cluster"], f"a Redis Cluster is reached over TCP: {ENV['redis_url']} "
                                "must be a redis:// or rediss:// URL of one of its nodes")
        database = redis_database(s.redis_url)
        if database not in ("", "0"):
            raise SettingsError(ENV["redis_url"], f"a Redis Cluster has database 0 only (with {ENV['redis_cluster']}; "
                                f"got database {database!r})")
    if s.redis_sentinels and not s.redis_sentinel_master:
        raise SettingsError(ENV["redis_sentinel_master"], f"required with {ENV['redis_sentinels']}: the name the "
                            "Sentinels monitor the primary by")
    if s.redis_sentinel_master and not s.redis_sentinels:
        raise SettingsError(ENV["redis_sentinels"], f"required with {ENV['redis_sentinel_master']} (host:port of "
                            "the Sentinels)")
    if s.redis_sentinels and s.redis_cluster:
        raise SettingsError(ENV["redis_sentinels"], f"a Redis Cluster fails over by itself: set either "
                            f"{ENV['redis_sentinels']} or {ENV['redis_cluster']}")
    if s.api_write_token and s.api_write_token == s.api_token:
        raise SettingsError(ENV["api_write_token"], f"must differ from {ENV['api_token']}: a reader's token must not "
                            "write (value not shown)")
    if s.metrics_auth and not s.api_token:
        raise SettingsError(ENV["metrics_auth"], f"needs {ENV['api_token']} (or {FILE_ENV['api_token']})")


def redis_database(url: str) -> str:
    """The database a Redis URL names (its `db` query parameter, else its path), "" when none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return (parse_qs(parts.query).get("db") or [""])[0] or parts.path.strip("/")


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
