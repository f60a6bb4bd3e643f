"""Security against real services: Kafka with a SASL_SSL listener (SCRAM-SHA-512) and Redis on TLS
with an ACL user (the `secure_stack` fixture), a worker and the alert sink behind a bearer token.

* a real `engage worker` scores events that `engage generate` produced, all over SASL_SSL and
  TLS, and its API answers; `engage replay` and `engage score` use the same secure clients;
* the services refuse a wrong password, a client without TLS and a wrong CA;
* the bearer token guards the API (and /metrics when asked), never /healthz or /readyz;
* no secret shows up in any log or command output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import certifi
import pytest
import redis
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError
from kafka import KafkaAdminClient

from devstack import stack as local
from streams.security import kafka_options, redis_options
from streams.settings import load_settings, prefixed_topics
from tests.streams.support import AlertSinkProcess, WorkerProcess
from tests.streams.test_web_page import browser  # noqa: F401  (the headless Chromium fixture)

pytestmark = pytest.mark.services
COUNT = 400
API_ROUTES = ["/kpis", "/leaderboard?limit=3", "/at-risk", "/alerts/recent", "/customers/{id}", "/accounts/{account}",
              "/no/such/route"]


def http(url: str, token: str | None = None, raw_header: str | None = None,
         data: bytes | None = None) -> tuple[int, dict, object]:
    """GET `url` (POST `data` when given) with a bearer token or a raw Authorization header."""
    headers = {"Authorization": raw_header if raw_header is not None else f"Bearer {token}"} if (
        token or raw_header is not None) else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as response:
            status, head, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        status, head, body = err.code, dict(err.headers), err.read()
    try:
        return status, head, json.loads(body)
    except ValueError:
        return status, head, body.decode(errors="replace")


def metrics(url: str, token: str | None) -> dict[str, float]:
    status, _, text = http(url + "/metrics", token)
    assert status == 200, (status, text)
    values = {}
    for line in str(text).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def engage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "devstack.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def secured(secure_stack, tmp_path_factory):
    """Two workers on the secure stack, both with an API token: `guarded` also protects /metrics
    and has scored events from `engage generate`; `open_metrics` keeps /metrics open (the default)."""
    unique = f"s{secrets.token_hex(5)}"
    tmp = tmp_path_factory.mktemp("secured")
    token = secrets.token_urlsafe(24)
    token_file = tmp / "api-token"
    token_file.write_text(token + "\n")
    env = {**secure_stack.client_env(), "ENGAGE_API_TOKEN_FILE": str(token_file)}
    guarded = WorkerProcess(secure_stack, unique, tmp, "guarded", extra_env={**env, "ENGAGE_METRICS_AUTH": "true"})
    open_metrics = WorkerProcess(secure_stack, f"{unique}o", tmp, "open-metrics", extra_env=env)
    outputs: dict[str, str] = {}
    try:
        for worker in (guarded, open_metrics):
            worker.wait_until(lambda w=worker: http(w.url + "/readyz")[0] == 200, "readiness")
        generated = engage(env, "generate", "--topic-prefix", f"{unique}.", "--count", str(COUNT), "--customers",
                           "60", "--accounts", "6", "--id-prefix", f"{unique}-", "--quiet")
        outputs["generate"] = generated.stdout + generated.stderr
        guarded.wait_until(lambda: metrics(guarded.url, token).get("engagement_messages_consumed_total") == COUNT,
                           "every generated message consumed")
        yield {"unique": unique, "token": token, "env": env, "guarded": guarded, "open": open_metrics,
               "outputs": outputs, "stack": secure_stack, "tmp": tmp}
    finally:
        guarded.stop()
        open_metrics.stop()


def secret_values(secure_stack: local.Stack, token: str) -> dict[str, str]:
    sec = secure_stack.security
    found = {name: Path(sec[f"{name}_password_file"]).read_text().strip() for name in ("kafka", "redis", "broker")}
    found["api_token"] = token
    assert all(len(value) >= 16 for value in found.values())
    return found


def test_a_worker_scores_generated_events_over_sasl_ssl_and_tls(secured):
    unique, token, guarded, stack = secured["unique"], secured["token"], secured["guarded"], secured["stack"]
    assert stack.kafka_bootstrap and stack.redis_url.startswith("rediss://")
    settings = load_settings(env={**secured["env"], "ENGAGE_KEY_PREFIX": unique, **{
        f"ENGAGE_{k.upper()}": v for k, v in prefixed_topics(f"{unique}.").items()}})
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.redis_username == "engage"

    records = redis_records_secure(settings)                  # state landed in the TLS Redis, as the ACL user
    assert len(records) > 10 and all(c.startswith(f"{unique}-") for c in records)
    m = metrics(guarded.url, token)
    assert m["engagement_events_processed_total"] > COUNT / 2

    status, _, board = http(guarded.url + "/leaderboard?limit=5", token)
    assert status == 200 and board["customers"] and all(c["customer_id"] in records for c in board["customers"])
    best = board["customers"][0]["customer_id"]
    status, _, card = http(guarded.url + f"/customers/{best}", token)
    assert status == 200 and card["customer_id"] == best and card["tier"] in ("low", "moderate", "excellent")

    # the CLI's Redis and Kafka clients go through the same settings: score, and a replay into a new prefix
    score = engage(secured["env"], "score", best, "--key-prefix", unique)
    secured["outputs"]["score"] = score.stdout + score.stderr
    assert json.loads(score.stdout)["es"] == card["es"]
    replayed = engage(secured["env"], "replay", "--topic-prefix", f"{unique}.", "--key-prefix", f"{unique}r")
    secured["outputs"]["replay"] = replayed.stdout + replayed.stderr
    assert f"replayed {COUNT:,} messages" in replayed.stderr
    again = redis_records_secure(load_settings(env={**secured["env"], "ENGAGE_KEY_PREFIX": f"{unique}r"}))
    assert set(again) == set(records)


def redis_records_secure(settings) -> dict:  # type: ignore[no-untyped-def]
    import asyncio

    from streams.state.store import RedisStore

    async def read() -> dict:
        store = RedisStore.from_settings(settings)
        try:
            return (await store.load(await store.customer_ids())).stored
        finally:
            await store.close()

    return asyncio.run(read())


def test_the_bearer_token_guards_the_api_and_metrics_when_asked(secured):
    token, guarded, other = secured["token"], secured["guarded"], secured["open"]
    _, _, board = http(guarded.url + "/leaderboard?limit=1", token)
    customer = board["customers"][0]
    _, _, card = http(guarded.url + f"/customers/{customer['customer_id']}", token)
    paths = [p.format(id=customer["customer_id"], account=card["account_id"] or "none") for p in API_ROUTES]
    for path in paths:
        for header in (None, f"Bearer {token}x", f"Bearer {token[:-1]}", f"Basic {token}", token, "Bearer "):
            status, head, body = http(guarded.url + path, raw_header=header)
            assert status == 401, (path, header, status)
            assert body == {"error": body["error"], "status": 401} and "token" in body["error"]
            assert head["WWW-Authenticate"].startswith("Bearer realm=")
            assert ('error="invalid_token"' in head["WWW-Authenticate"]) is (header is not None)
        status, _, body = http(guarded.url + path, token)
        expected = 404 if path == "/no/such/route" or path.startswith("/accounts/none") else 200
        assert status == expected, (path, status, body)
    assert http(guarded.url + "/kpis", raw_header=f"bearer  {token} ")[0] == 200   # scheme is case-insensitive
    ids = json.dumps({"ids": [customer["customer_id"]]}).encode()
    for path in ("/customers:batch", "/accounts:batch"):             # the batch lookups: POST, guarded the same
        for header in (None, f"Bearer {token}x", "Bearer "):
            assert http(guarded.url + path, raw_header=header, data=ids)[0] == 401, (path, header)
        assert http(guarded.url + path, token, data=ids)[0] == 200, path
    status, _, doc = http(guarded.url + "/openapi.json")                  # the schema is no secret
    assert status == 200 and doc["openapi"] == "3.1.0"
    for worker in (guarded, other):                       # probes stay open
        assert http(worker.url + "/healthz")[0] == 200 and http(worker.url + "/readyz")[0] == 200
        status, _, page = http(worker.url + "/")
        assert status == 200 and "<html" in str(page)
    # /metrics: protected with ENGAGE_METRICS_AUTH, open by default
    assert http(guarded.url + "/metrics")[0] == 401
    assert http(guarded.url + "/metrics", "wrong-token-0123456789")[0] == 401
    assert "engagement_events_consumed_total" in metrics(guarded.url, token)
    assert "engagement_events_consumed_total" in metrics(other.url, None)
    assert http(other.url + "/kpis")[0] == 401 and http(other.url + "/kpis", token)[0] == 200


def test_the_live_page_sends_the_token_it_was_given_in_the_url_fragment(secured, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    guarded, token = secured["guarded"], secured["token"]
    wait = WebDriverWait(browser, 30)
    updated = lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-updated")  # noqa: E731
    browser.get(guarded.url + "/#token=" + urllib.parse.quote(token, safe=""))
    wait.until(updated)
    assert browser.current_url == guarded.url + "/"              # the token left the address bar at once
    _, _, k = http(guarded.url + "/kpis", token)
    assert browser.find_element(By.ID, "aer").text == f"{k['aer']:.2f}"
    assert browser.find_element(By.ID, "members").text == str(k["members"])
    browser.get(guarded.url + "/")                                # same tab: kept in sessionStorage
    wait.until(updated)
    browser.execute_script("sessionStorage.clear()")             # without a token: the API says 401
    browser.get(guarded.url + "/")
    wait.until(lambda d: "API token" in d.find_element(By.ID, "error").text)
    assert not updated(browser) and browser.find_element(By.ID, "aer").text == "–"


def test_the_alert_sink_consumes_over_sasl_ssl_and_guards_its_metrics(secured, tmp_path):
    unique, token = secured["unique"], secured["token"]
    sink = AlertSinkProcess(secured["stack"], unique, tmp_path, "sink", "http://127.0.0.1:9/hook",
                            extra_env={**secured["env"], "ENGAGE_METRICS_AUTH": "1"})
    try:
        sink.wait_until(lambda: http(sink.url + "/healthz")[0] == 200, "the sink's /healthz (open)")
        status, head, body = http(sink.url + "/metrics")
        assert status == 401 and body["status"] == 401 and head["WWW-Authenticate"].startswith("Bearer")
        assert http(sink.url + "/metrics", token + "x")[0] == 401
        # it joined its group over SASL_SSL: it owns the alerts topic's partitions
        sink.wait_until(lambda: metrics(sink.url, token)["engagement_alert_sink_assigned_partitions"] > 0,
                        "partitions assigned to the sink")
    finally:
        sink.stop()
    secured["outputs"]["alert-sink log"] = sink.log.read_text(errors="replace")


def test_the_secure_services_refuse_wrong_credentials_plain_clients_and_a_wrong_ca(secure_stack, caplog):
    env = secure_stack.client_env()
    good = load_settings(env=env)

    def kafka_refusal(**change: str) -> str:
        """What the client log says about a client with `change`, which could not even bootstrap.

        aiokafka (the alert sink's client) tries each bootstrap server once and logs why it failed."""
        settings = load_settings(env={k: v for k, v in {**env, **change}.items() if v})

        async def start() -> None:
            consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000,
                                        **kafka_options(settings))
            try:
                await consumer.start()
            finally:
                await consumer.stop()

        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="aiokafka"), pytest.raises(KafkaConnectionError):
            asyncio.run(start())
        return caplog.text

    admin = KafkaAdminClient(bootstrap_servers=good.kafka_bootstrap, **kafka_options(good))   # control: works
    try:
        assert admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    wrong = kafka_refusal(ENGAGE_KAFKA_PASSWORD_FILE="", ENGAGE_KAFKA_PASSWORD="not-the-password")
    assert "SaslAuthenticationFailed" in wrong and "invalid credentials" in wrong
    assert "SaslAuthenticationFailed" in kafka_refusal(ENGAGE_KAFKA_USERNAME="nobody")
    no_tls = kafka_refusal(ENGAGE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", ENGAGE_KAFKA_SSL_CAFILE="")
    assert "closed" in no_tls                                      # the TLS listener hangs up on plain TCP
    plain = kafka_refusal(ENGAGE_KAFKA_SECURITY_PROTOCOL="PLAINTEXT", ENGAGE_KAFKA_SSL_CAFILE="",
                          ENGAGE_KAFKA_USERNAME="", ENGAGE_KAFKA_PASSWORD_FILE="", ENGAGE_KAFKA_SASL_MECHANISM="")
    assert "closed" in plain
    assert "CERTIFICATE_VERIFY_FAILED" in kafka_refusal(ENGAGE_KAFKA_SSL_CAFILE=certifi.where())

    def redis_client(url: str = secure_stack.redis_url, **change: str) -> redis.Redis:
        settings = load_settings(env={k: v for k, v in {**env, "ENGAGE_REDIS_URL": url, **change}.items() if v})
        return redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5,
                                    **redis_options(settings))

    assert redis_client().execute_command("ACL", "WHOAMI") == b"engage"                   # control: works
    with pytest.raises(redis.exceptions.NoPermissionError):          # the ACL user has only the project's commands
        redis_client().flushall()
    with pytest.raises(redis.AuthenticationError):
        redis_client(ENGAGE_REDIS_PASSWORD_FILE="", ENGAGE_REDIS_PASSWORD="not-the-password").ping()
    with pytest.raises(redis.AuthenticationError):                                         # default user is off
        redis_client(ENGAGE_REDIS_USERNAME="", ENGAGE_REDIS_PASSWORD_FILE="").ping()
    with pytest.raises(redis.ConnectionError):                                             # no TLS: TLS port only
        redis_client(secure_stack.redis_url.replace("rediss://", "redis://"), ENGAGE_REDIS_SSL_CA_FILE="").ping()
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis_client(ENGAGE_REDIS_SSL_CA_FILE=certifi.where()).ping()

    again = local.up(Path(secure_stack.directory), secure=True)                          # reused, and healthy
    assert again.services["kafka"].pid == secure_stack.services["kafka"].pid
    assert local.status(Path(secure_stack.directory))["running"] is True
    with pytest.raises(local.StackError):
        local.up(Path(secure_stack.directory))                     # a secure stack is never reused as a plain one


def test_no_secret_shows_up_in_logs_or_command_outputs(secured):
    """Runs last (file order): the logs hold the whole runs, and the outputs of the tests above."""
    found = secret_values(secured["stack"], secured["token"])
    env = {**secured["env"], "ENGAGE_API_TOKEN_FILE": "", "ENGAGE_API_TOKEN": secured["token"]}
    shown = engage(env, "config", "settings")
    settings = json.loads(shown.stdout)
    assert settings["api_token"] == "***" and settings["kafka_password"] == "***"
    assert settings["redis_password"] == "***" and settings["kafka_username"] == "engage"
    in_url = engage({**env, "ENGAGE_REDIS_USERNAME": "", "ENGAGE_REDIS_PASSWORD_FILE": "",
                     "ENGAGE_REDIS_URL": secured["stack"].redis_url.replace("//", f"//engage:{found['redis']}@")},
                    "config", "settings")
    assert json.loads(in_url.stdout)["redis_url"].startswith("rediss://engage:***@127.0.0.1:")
    # a bad secret is refused without echoing it
    bad = engage({**env, "ENGAGE_API_TOKEN": found["kafka"] + " x"}, "config", "settings", check=False)
    assert bad.returncode == 2 and "ENGAGE_API_TOKEN" in bad.stderr
    both = engage({**env, "ENGAGE_KAFKA_PASSWORD": found["kafka"]}, "config", "settings", check=False)
    assert both.returncode == 2 and "ENGAGE_KAFKA_PASSWORD_FILE" in both.stderr
    status = engage({"ENGAGE_STACK_DIR": secured["stack"].directory}, "stack", "status", "--json")

    texts = {**secured["outputs"], "config settings": shown.stdout + shown.stderr,
             "config settings (password in URL)": in_url.stdout + in_url.stderr,
             "bad token": bad.stdout + bad.stderr, "both set": both.stdout + both.stderr,
             "stack status": status.stdout + status.stderr,
             "guarded worker log": secured["guarded"].log.read_text(errors="replace"),
             "open-metrics worker log": secured["open"].log.read_text(errors="replace")}
    assert "generate" in texts      # plus score, replay and the alert sink's log when those tests ran
    assert '"kafka_password": "***"' in texts["guarded worker log"]      # the worker shows its settings, redacted
    leaks = [(where, name) for where, text in texts.items() for name, value in found.items() if value in text]
    assert leaks == []


def test_the_live_demo_sends_the_token_to_its_worker(stack_view, monkeypatch):
    """`engage demo` with ENGAGE_API_TOKEN: its worker requires the token (API and /metrics), and the
    demo's own calls send it, so the live view still shows KPIs and counters."""
    from click.testing import CliRunner

    from devstack.cli import main

    token = secrets.token_urlsafe(24)
    monkeypatch.setenv("ENGAGE_STACK_DIR", str(stack_view))
    monkeypatch.setenv("ENGAGE_API_TOKEN", token)
    monkeypatch.setenv("ENGAGE_METRICS_AUTH", "on")
    result = CliRunner().invoke(main, ["demo", "--duration", "3", "--rate", "50", "--backfill", "200",
                                       "--customers", "30"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    final = result.output.rsplit("Live engagement KPIs", 1)[1]
    # a refused call would show as "(waiting for the worker: HTTP Error 401: Unauthorized)"; a bare "401"
    # could be part of a random port in the printed addresses (it was: redis://127.0.0.1:57401)
    assert "waiting for the worker" not in result.output and "Unauthorized" not in result.output
    assert not re.search(r"\b401\b", result.output)
    assert int(final.split("consumed ", 1)[1].split()[0].replace(",", "")) >= 200
    assert "Active Engagement Rate" in final and "Top customers" in final
    assert token not in result.output
