"""Runtime settings: defaults, precedence, and errors that name the variable."""

from __future__ import annotations

import pytest

from streams.settings import SettingsError, load_settings

BASE = {"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "ENGAGE_REDIS_URL": "redis://127.0.0.1:6379/0"}


def test_defaults_and_env():
    s = load_settings(env=BASE)
    assert (s.kafka_bootstrap, s.redis_url, s.events_topic, s.partitions, s.web_port) == (
        "127.0.0.1:9092", "redis://127.0.0.1:6379/0", "engagement.events", 4, 6066)
    s = load_settings(env={**BASE, "ENGAGE_BATCH_SIZE": "250", "ENGAGE_KPI_INTERVAL_S": "0.5"})
    assert (s.batch_size, s.kpi_interval_s) == (250, 0.5)


def test_flags_win_over_env_and_kafka_scheme_is_accepted():
    s = load_settings({"web_port": 7000, "kafka_bootstrap": "kafka://h1:1,h2:2"}, env={**BASE, "ENGAGE_WEB_PORT": "8000"})
    assert s.web_port == 7000 and s.kafka_bootstrap == "h1:1,h2:2"


@pytest.mark.parametrize(("variable", "value"), [
    ("ENGAGE_WEB_PORT", "70000"),
    ("ENGAGE_WEB_PORT", "http"),
    ("ENGAGE_API_PROCESSES", "0"),
    ("ENGAGE_API_PROCESSES", "65"),
    ("ENGAGE_PARTITIONS", "0"),
    ("ENGAGE_BATCH_SIZE", "1.5"),
    ("ENGAGE_BATCH_WITHIN_S", "-1"),
    ("ENGAGE_REDIS_URL", "localhost:6379"),
    ("ENGAGE_KAFKA_BOOTSTRAP", "no-port"),
    ("ENGAGE_EVENTS_TOPIC", "bad topic"),
    ("ENGAGE_KEY_PREFIX", "a{b}"),
    ("ENGAGE_KEY_PREFIX", "a:b"),
])
def test_a_bad_value_names_its_variable(variable, value):
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, variable: value})
    assert err.value.name == variable and variable in str(err.value)


def test_missing_addresses_are_named_and_the_checkout_says_to_start_a_stack(tmp_path):
    from devstack.stack import local_addresses

    with pytest.raises(SettingsError) as err:         # the product: no local defaults at all
        load_settings(env={})
    assert str(err.value) == "setting ENGAGE_KAFKA_BOOTSTRAP: not set"
    with pytest.raises(SettingsError) as err:         # the checkout's engage, and no stack runs
        load_settings(env={}, defaults=local_addresses(tmp_path / "none"))
    assert "ENGAGE_KAFKA_BOOTSTRAP" in str(err.value) and "./engage stack up" in str(err.value)


def test_topic_retention_settings_reach_the_topic_specs():
    from streams.worker.topics import topic_specs

    s = load_settings(env={**BASE, "ENGAGE_EVENTS_RETENTION_MS": "86400000", "ENGAGE_PARTITIONS": "8"})
    specs = {spec.name: spec for spec in topic_specs(s)}
    events = specs["engagement.events"]
    assert events.partitions == 8 and events.config["retention.ms"] == "86400000"
    assert events.config["message.timestamp.type"] == "LogAppendTime"
    assert specs["engagement.scores"].config["cleanup.policy"] == "compact"
    assert specs["engagement.events.dlq"].config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, "ENGAGE_DLQ_RETENTION_MS": "5"})
    assert err.value.name == "ENGAGE_DLQ_RETENTION_MS"


# --- security settings (docs/security.md) ----------------------------------------------------

import certifi  # noqa: E402  (a real PEM CA bundle for the CA-file settings)

from streams import security  # noqa: E402
from streams.settings import FILE_ENV, SECRETS, redact_url  # noqa: E402

SECRET = "s3cr3t-Value-0123456789"
SASL = {**BASE, "ENGAGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "ENGAGE_KAFKA_USERNAME": "engage",
        "ENGAGE_KAFKA_PASSWORD": SECRET, "ENGAGE_KAFKA_SSL_CAFILE": certifi.where()}


def test_security_defaults_are_off():
    s = load_settings(env=BASE)
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism, s.kafka_username, s.kafka_password,
            s.kafka_ssl_cafile) == ("PLAINTEXT", "SCRAM-SHA-512", "", "", "")
    assert (s.redis_username, s.redis_password, s.redis_ssl_ca_file, s.api_token, s.metrics_auth) == (
        "", "", "", "", False)
    assert security.kafka_options(s) == {"security_protocol": "PLAINTEXT"}
    assert security.faust_credentials(s) is None and security.redis_options(s) == {}
    assert security.auth_header(s) == {}


def test_sasl_ssl_settings_become_the_same_client_options_everywhere():
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = load_settings(env={**SASL, "ENGAGE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
                           "ENGAGE_KAFKA_SASL_MECHANISM": "scram-sha-256"})
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    options = security.kafka_options(s)
    context = options.pop("ssl_context")
    assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                       "sasl_plain_username": "engage", "sasl_plain_password": SECRET}
    # what faust-streaming 0.15.3 hands its aiokafka consumer and producers
    faust_side = credentials_to_aiokafka_auth(security.faust_credentials(s))
    assert faust_side["ssl_context"] is not None
    assert {k: faust_side[k] for k in options} == options
    assert SECRET not in repr(security.faust_credentials(s))

    plain_sasl = load_settings(env={**SASL, "ENGAGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                    "ENGAGE_KAFKA_SSL_CAFILE": ""})
    assert "ssl_context" not in security.kafka_options(plain_sasl)
    assert credentials_to_aiokafka_auth(security.faust_credentials(plain_sasl))["security_protocol"] == "SASL_PLAINTEXT"

    tls_only = load_settings(env={**BASE, "ENGAGE_KAFKA_SECURITY_PROTOCOL": "SSL",
                                  "ENGAGE_KAFKA_SSL_CAFILE": certifi.where()})
    assert set(security.kafka_options(tls_only)) == {"security_protocol", "ssl_context"}
    assert credentials_to_aiokafka_auth(security.faust_credentials(tls_only))["security_protocol"] == "SSL"


def test_redis_acl_user_and_tls_settings_become_redis_options():
    s = load_settings(env={**BASE, "ENGAGE_REDIS_URL": "rediss://127.0.0.1:6380/0", "ENGAGE_REDIS_USERNAME": "app",
                           "ENGAGE_REDIS_PASSWORD": SECRET, "ENGAGE_REDIS_SSL_CA_FILE": certifi.where()})
    assert security.redis_options(s) == {"username": "app", "password": SECRET, "ssl_ca_certs": certifi.where()}
    # a password inside the URL still works (redis-py reads it from there), and is never shown
    in_url = load_settings(env={**BASE, "ENGAGE_REDIS_URL": f"redis://app:{SECRET}@127.0.0.1:6379/0"})
    assert security.redis_options(in_url) == {}
    assert SECRET not in repr(in_url) and "redis://app:***@127.0.0.1:6379/0" in repr(in_url)


@pytest.mark.parametrize(("variable", "value"), [
    ("ENGAGE_KAFKA_SECURITY_PROTOCOL", "TLS"),
    ("ENGAGE_KAFKA_SASL_MECHANISM", "GSSAPI"),
    ("ENGAGE_KAFKA_SSL_CAFILE", "/nonexistent/ca.pem"),
    ("ENGAGE_KAFKA_SSL_CAFILE", __file__),                 # a file, but no PEM certificate
    ("ENGAGE_REDIS_SSL_CA_FILE", "/nonexistent/ca.pem"),
    ("ENGAGE_METRICS_AUTH", "maybe"),
    ("ENGAGE_KAFKA_USERNAME", "bad\nname"),
])
def test_a_bad_security_value_names_its_variable(variable, value):
    with pytest.raises(SettingsError) as err:
        load_settings(env={**SASL, "ENGAGE_REDIS_URL": "rediss://127.0.0.1:6380/0", variable: value})
    assert err.value.name == variable and variable in str(err.value)


@pytest.mark.parametrize(("variable", "value"), [
    ("ENGAGE_API_TOKEN", "too-short-token"),              # under 16 characters
    ("ENGAGE_API_TOKEN", "has a space in it, 0123456789"),
    ("ENGAGE_API_TOKEN", "x" * 513),
    ("ENGAGE_KAFKA_PASSWORD", "line\nbreak-0123456789"),
    ("ENGAGE_REDIS_PASSWORD", "nul\x00-0123456789"),
])
def test_a_bad_secret_is_refused_without_echoing_it(variable, value):
    env = {**SASL, variable: value} if variable != "ENGAGE_REDIS_PASSWORD" else {**BASE, variable: value}
    with pytest.raises(SettingsError) as err:
        load_settings(env=env)
    assert err.value.name == variable and "value not shown" in str(err.value)
    assert value not in str(err.value) and value[:8] not in str(err.value)


@pytest.mark.parametrize(("change", "named"), [
    ({"ENGAGE_KAFKA_USERNAME": ""}, "ENGAGE_KAFKA_USERNAME"),
    ({"ENGAGE_KAFKA_PASSWORD": ""}, "ENGAGE_KAFKA_PASSWORD"),
    ({"ENGAGE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "ENGAGE_KAFKA_SSL_CAFILE": ""}, "ENGAGE_KAFKA_SECURITY_PROTOCOL"),
    ({"ENGAGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "ENGAGE_KAFKA_SSL_CAFILE"),
    ({"ENGAGE_KAFKA_SECURITY_PROTOCOL": "SSL", "ENGAGE_KAFKA_USERNAME": "", "ENGAGE_KAFKA_PASSWORD": "",
      "ENGAGE_KAFKA_SASL_MECHANISM": "PLAIN"}, "ENGAGE_KAFKA_SASL_MECHANISM"),
    ({"ENGAGE_REDIS_SSL_CA_FILE": certifi.where()}, "ENGAGE_REDIS_SSL_CA_FILE"),   # with a redis:// URL
    ({"ENGAGE_REDIS_USERNAME": "app"}, "ENGAGE_REDIS_PASSWORD"),
    ({"ENGAGE_REDIS_URL": "redis://:inurl@127.0.0.1:6379/0", "ENGAGE_REDIS_PASSWORD": SECRET}, "ENGAGE_REDIS_PASSWORD"),
    ({"ENGAGE_REDIS_URL": "redis://127.0.0.1:6379/0?password=inurl", "ENGAGE_REDIS_PASSWORD": SECRET},
     "ENGAGE_REDIS_PASSWORD"),
    ({"ENGAGE_REDIS_URL": "redis://app@127.0.0.1:6379/0", "ENGAGE_REDIS_USERNAME": "app",
      "ENGAGE_REDIS_PASSWORD": SECRET}, "ENGAGE_REDIS_USERNAME"),
    ({"ENGAGE_METRICS_AUTH": "on"}, "ENGAGE_METRICS_AUTH"),                         # without a token
])
def test_inconsistent_security_settings_name_the_key(change, named):
    with pytest.raises(SettingsError) as err:
        load_settings(env={k: v for k, v in {**SASL, **change}.items() if v})
    assert err.value.name == named and named in str(err.value)
    assert SECRET not in str(err.value) and "inurl" not in str(err.value)


def test_metrics_auth_is_bool_ish_and_needs_the_token():
    token = "t0ken-0123456789abcdef"
    for text, expected in (("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False), ("off", False),
                           ("No", False), ("false", False)):
        s = load_settings(env={**BASE, "ENGAGE_API_TOKEN": token, "ENGAGE_METRICS_AUTH": text})
        assert s.metrics_auth is expected
    assert security.auth_header(s) == {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("field", SECRETS)
def test_every_secret_can_come_from_a_file(tmp_path, field):
    variable, file_variable = f"ENGAGE_{field.upper()}", FILE_ENV[field]
    assert file_variable == f"{variable}_FILE"
    extra = {"ENGAGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "ENGAGE_KAFKA_USERNAME": "u"} \
        if field == "kafka_password" else {}
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")                       # one trailing newline is stripped
    s = load_settings(env={**BASE, **extra, file_variable: str(path)})
    assert getattr(s, field) == SECRET
    path.write_text(SECRET + "\r\n")
    assert getattr(load_settings(env={**BASE, **extra, file_variable: str(path)}), field) == SECRET

    with pytest.raises(SettingsError) as both:           # both set: an error naming both, echoing neither
        load_settings(env={**BASE, **extra, variable: SECRET, file_variable: str(path)})
    assert both.value.name == variable and variable in str(both.value) and file_variable in str(both.value)
    assert SECRET not in str(both.value)

    for unreadable in (tmp_path / "missing", tmp_path):  # no such file; a directory
        with pytest.raises(SettingsError) as err:
            load_settings(env={**BASE, **extra, file_variable: str(unreadable)})
        assert err.value.name == file_variable and file_variable in str(err.value)
    path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, **extra, file_variable: str(path)})
    assert err.value.name == file_variable and SECRET not in str(err.value)
    path.write_text("\n")
    with pytest.raises(SettingsError) as err:            # empty: never silently "no secret"
        load_settings(env={**BASE, **extra, file_variable: str(path)})
    assert err.value.name == file_variable and "empty" in str(err.value)


def test_a_bad_secret_from_a_file_is_not_echoed_either(tmp_path):
    path = tmp_path / "token"
    path.write_text("short secret\n")
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, "ENGAGE_API_TOKEN_FILE": str(path)})
    assert err.value.name == "ENGAGE_API_TOKEN" and "short secret" not in str(err.value)


def test_secrets_and_url_passwords_are_never_shown():
    s = load_settings(env={**SASL, "ENGAGE_REDIS_URL": f"redis://app:{SECRET}x@127.0.0.1:6379/0",
                           "ENGAGE_API_TOKEN": SECRET + "-api", "ENGAGE_ALERT_WEBHOOK_URL":
                           f"https://hook:{SECRET}w@example.com/x"})
    shown = s.redacted()
    assert shown["kafka_password"] == shown["api_token"] == "***" and shown["redis_password"] == ""
    assert shown["redis_url"] == "redis://app:***@127.0.0.1:6379/0"
    for text in (repr(s), str(s), str(shown)):
        assert SECRET not in text
    assert s.kafka_password == SECRET                     # still there for the clients
    assert redact_url("redis://:p/a@ss@h:1/0?password=q&db=1") == "redis://:***@h:1/0?password=***&db=1"
    assert redact_url("unix:///run/redis.sock?db=0&PASSWORD=q") == "unix:///run/redis.sock?db=0&PASSWORD=***"
    assert redact_url("rediss://h:6380/0") == "rediss://h:6380/0"
    with pytest.raises(SettingsError) as err:            # a bad URL's error hides its password too
        load_settings(env={**BASE, "ENGAGE_REDIS_URL": f"http://u:{SECRET}@h:1"})
    assert SECRET not in str(err.value) and "u:***@h:1" in str(err.value)


@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer t0ken-0123456789abcdef", True),
    ("bearer   t0ken-0123456789abcdef ", True),
    (None, False),
    ("", False),
    ("Bearer", False),
    ("Bearer t0ken-0123456789abcdeF", False),
    ("Bearer t0ken-0123456789abcdef0", False),
    ("Basic t0ken-0123456789abcdef", False),
    ("t0ken-0123456789abcdef", False),
    ("Bearer t0ken-0123456789abcd\u00e9f", False),
])
def test_bearer_check(header, ok):
    assert security.bearer_ok(header, "t0ken-0123456789abcdef") is ok
    assert security.bearer_ok(header, "") is True        # no token configured: no auth


def test_a_webhook_url_is_shown_by_host_only_and_may_come_from_a_file(tmp_path):
    from streams.settings import redact_webhook

    slack = f"https://hooks.slack.com/services/T0/B0/{SECRET}"
    s = load_settings(env={**BASE, "ENGAGE_ALERT_WEBHOOK_URL": slack})
    assert s.alert_webhook_url == slack and s.redacted()["alert_webhook_url"] == "https://hooks.slack.com/***"
    assert SECRET not in repr(s)
    assert redact_webhook("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert redact_webhook(f"https://u:{SECRET}@h?t={SECRET}") == "https://h/***"
    path = tmp_path / "hook"
    path.write_text(slack + "\n")
    assert load_settings(env={**BASE, "ENGAGE_ALERT_WEBHOOK_URL_FILE": str(path)}).alert_webhook_url == slack
    with pytest.raises(SettingsError) as err:          # a bad one is refused without showing its path
        load_settings(env={**BASE, "ENGAGE_ALERT_WEBHOOK_URL": f"ftp://h/{SECRET}"})
    assert SECRET not in str(err.value) and "ftp://h/***" in str(err.value)


# --- Redis Cluster ------------------------------------------------------------------------------


def test_redis_cluster_is_bool_ish_and_off_by_default():
    assert load_settings(env=BASE).redis_cluster is False
    for text, expected in (("1", True), ("true", True), ("ON", True), ("no", False), ("0", False)):
        assert load_settings(env={**BASE, "ENGAGE_REDIS_CLUSTER": text}).redis_cluster is expected


@pytest.mark.parametrize(("url", "named"), [
    ("unix:///run/redis.sock", "ENGAGE_REDIS_CLUSTER"),       # the cluster client speaks TCP only
    ("redis://127.0.0.1:7000/1", "ENGAGE_REDIS_URL"),         # a cluster has database 0 only
    ("redis://127.0.0.1:7000?db=2", "ENGAGE_REDIS_URL"),
])
def test_a_redis_cluster_url_it_cannot_use_is_named(url, named):
    assert load_settings(env={**BASE, "ENGAGE_REDIS_URL": url}).redis_cluster is False    # fine for one Redis
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, "ENGAGE_REDIS_URL": url, "ENGAGE_REDIS_CLUSTER": "true"})
    assert err.value.name == named and named in str(err.value)


def test_redis_cluster_falls_back_to_the_local_stacks_cluster(tmp_path):
    from devstack.stack import CLUSTER_NODES, Service, Stack, local_addresses

    services = {"kafka": Service("kafka", "127.0.0.1:9"), "redis": Service("redis", "redis://127.0.0.1:8/0")}
    Stack(str(tmp_path), dict(services)).save()
    with pytest.raises(SettingsError) as err:
        load_settings(env={"ENGAGE_REDIS_CLUSTER": "true"}, defaults=local_addresses(tmp_path))
    assert err.value.name == "ENGAGE_REDIS_URL" and "engage stack up --redis-cluster" in str(err.value)
    Stack(str(tmp_path), {**services, CLUSTER_NODES[0]: Service(CLUSTER_NODES[0], "redis://127.0.0.1:7")}).save()
    assert load_settings(env={}, defaults=local_addresses(tmp_path)).redis_url == "redis://127.0.0.1:8/0"
    s = load_settings(env={"ENGAGE_REDIS_CLUSTER": "yes"}, defaults=local_addresses(tmp_path))
    assert (s.kafka_bootstrap, s.redis_url, s.redis_cluster) == ("127.0.0.1:9", "redis://127.0.0.1:7", True)


def test_settings_never_read_the_local_stack_themselves(tmp_path, monkeypatch):
    """Only the caller's defaults name a local stack: a running one is not a production fallback."""
    from devstack.stack import Service, Stack

    monkeypatch.setenv("ENGAGE_STACK_DIR", str(tmp_path))
    Stack(str(tmp_path), {"kafka": Service("kafka", "127.0.0.1:9"),
                          "redis": Service("redis", "redis://127.0.0.1:8/0")}).save()
    with pytest.raises(SettingsError) as err:
        load_settings(env={})
    assert err.value.name == "ENGAGE_KAFKA_BOOTSTRAP"


def test_redis_client_is_the_cluster_client_with_redis_cluster():
    import redis.asyncio
    import redis.asyncio.cluster

    from streams.state.redis_client import redis_client

    acl = {"ENGAGE_REDIS_USERNAME": "app", "ENGAGE_REDIS_PASSWORD": SECRET}
    single = redis_client(load_settings(env={**BASE, **acl}))
    cluster = redis_client(load_settings(env={**BASE, **acl, "ENGAGE_REDIS_CLUSTER": "true"}), socket_timeout=3)
    assert type(single) is redis.asyncio.Redis and type(cluster) is redis.asyncio.cluster.RedisCluster
    single_kwargs = single.connection_pool.connection_kwargs
    assert (single_kwargs["username"], single_kwargs["password"]) == ("app", SECRET)
    assert {k: cluster.connection_kwargs[k] for k in ("username", "password", "socket_timeout")} == {
        "username": "app", "password": SECRET, "socket_timeout": 3}
    tls = redis_client(load_settings(env={**BASE, "ENGAGE_REDIS_URL": "rediss://127.0.0.1:6380",
                                          "ENGAGE_REDIS_SSL_CA_FILE": certifi.where(), "ENGAGE_REDIS_CLUSTER": "1"}))
    assert tls.connection_kwargs["ssl_ca_certs"] == certifi.where()
    assert tls.connection_kwargs["connection_class"].__name__ == "SSLConnection"


@pytest.mark.parametrize(("value", "brokers", "expected"), [
    ("auto", 1, (1, 1)), ("auto", 2, (2, 1)), ("auto", 3, (3, 2)), ("auto", 5, (3, 2)),
    ("1", 3, (1, 1)),     # min.insync.replicas 1 set on the topic: a broker default of 2 must not refuse its writes
    ("2", 3, (2, 1)), (" 3 ", 3, (3, 2)), ("5", 5, (5, 2)),
])
def test_topic_replication_follows_the_brokers_and_two_replicas_stay_in_sync_from_three_on(value, brokers, expected):
    from streams.worker.topics import replication

    assert replication(load_settings(env={**BASE, "ENGAGE_TOPIC_REPLICATION": value}), brokers) == expected


@pytest.mark.parametrize("value", ["0", "17", "three", "-1", "2.5", "all"])
def test_a_bad_topic_replication_is_refused_naming_the_variable(value):
    with pytest.raises(SettingsError, match="ENGAGE_TOPIC_REPLICATION"):
        load_settings(env={**BASE, "ENGAGE_TOPIC_REPLICATION": value})


def test_more_replicas_than_brokers_is_refused_naming_the_variable():
    from streams.worker.topics import replication

    with pytest.raises(SettingsError, match="ENGAGE_TOPIC_REPLICATION.*3.*1 broker"):
        replication(load_settings(env={**BASE, "ENGAGE_TOPIC_REPLICATION": "3"}), 1)


# --- Redis Sentinel and replicas ------------------------------------------------------------------

SENTINELS = {"ENGAGE_REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379", "ENGAGE_REDIS_SENTINEL_MASTER": "engage"}


@pytest.mark.parametrize(("env", "named"), [
    ({"ENGAGE_REDIS_SENTINELS": "10.0.0.1:26379"}, "ENGAGE_REDIS_SENTINEL_MASTER"),   # each needs the other
    ({"ENGAGE_REDIS_SENTINEL_MASTER": "engage"}, "ENGAGE_REDIS_SENTINELS"),
    ({**SENTINELS, "ENGAGE_REDIS_CLUSTER": "true"}, "ENGAGE_REDIS_SENTINELS"),        # a cluster fails over itself
    ({"ENGAGE_REDIS_SENTINELS": "10.0.0.1", "ENGAGE_REDIS_SENTINEL_MASTER": "engage"}, "ENGAGE_REDIS_SENTINELS"),
    ({"ENGAGE_REDIS_MIN_REPLICAS": "-1"}, "ENGAGE_REDIS_MIN_REPLICAS"),
    ({"ENGAGE_REDIS_MIN_REPLICAS": "1.5"}, "ENGAGE_REDIS_MIN_REPLICAS"),
])
def test_a_sentinel_or_replica_setting_it_cannot_use_is_named(env, named):
    with pytest.raises(SettingsError) as err:
        load_settings(env={**BASE, **env})
    assert err.value.name == named and named in str(err.value)


def test_min_replicas_is_0_by_default_and_waits_2_s():
    s = load_settings(env=BASE)
    assert (s.redis_min_replicas, s.redis_replica_timeout_s) == (0, 2.0)
    s = load_settings(env={**BASE, "ENGAGE_REDIS_MIN_REPLICAS": "2", "ENGAGE_REDIS_REPLICA_TIMEOUT_S": "0.5"})
    assert (s.redis_min_replicas, s.redis_replica_timeout_s) == (2, 0.5)


def test_redis_client_asks_the_sentinels_for_the_primary_with_the_urls_database_and_credentials():
    from redis.asyncio.sentinel import SentinelConnectionPool

    from streams.state.redis_client import redis_client

    bare = load_settings(env={"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", **SENTINELS})   # no URL needed
    client = redis_client(bare)
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == "engage" and client.connection_pool.connection_kwargs["db"] == 0
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in client.connection_pool.sentinel_manager.sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    with_url = redis_client(load_settings(env={**BASE, **SENTINELS, "ENGAGE_REDIS_URL": "redis://:pw@ignored:1/3"}))
    kwargs = with_url.connection_pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"]) == (3, "pw")
