"""Client security from the settings, in one place: every Kafka, Redis and HTTP client uses these.

* Kafka: `kafka_options` are the keyword arguments of kafka-python's KafkaAdminClient,
  KafkaProducer and KafkaConsumer and of aiokafka's AIOKafkaConsumer/Producer (both take
  the same names: security_protocol, ssl_context, sasl_mechanism, sasl_plain_username,
  sasl_plain_password); `faust_credentials` is the Faust app's `broker_credentials`, which
  faust-streaming 0.15.3 turns into the same aiokafka arguments for its consumer and
  producers (SASLCredentials: SASL_SSL when it has an SSL context, else SASL_PLAINTEXT; the
  mechanism, SCRAM-SHA-256/512 or PLAIN, is passed as `sasl_mechanism`).
* Redis: `redis_options` are redis-py's `username`, `password` and `ssl_ca_certs`.
* HTTP: `bearer_ok` checks an `Authorization: Bearer <token>` header in constant time.

TLS always verifies the server's certificate and host name (against `kafka_ssl_cafile` /
`redis_ssl_ca_file`, or the system's CAs when those are empty).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from typing import Any

from streams.settings import Settings

UNAUTHORIZED = {"error": "missing or invalid bearer token (Authorization: Bearer <ENGAGE_API_TOKEN>)",
                "status": 401}


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for kafka-python and aiokafka clients."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    context = kafka_ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_username,
                       sasl_plain_password=settings.kafka_password)
    return options


def faust_credentials(settings: Settings) -> Any:
    """The Faust app's `broker_credentials` (None for PLAINTEXT)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=settings.kafka_username, password=settings.kafka_password,
                                     ssl_context=kafka_ssl_context(settings), mechanism=settings.kafka_sasl_mechanism)
    if protocol == "SSL":
        return faust.SSLCredentials(kafka_ssl_context(settings))
    return None


def redis_options(settings: Settings) -> dict[str, Any]:
    """redis-py keyword arguments next to the URL (a password inside the URL works as well)."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = settings.redis_password
    if settings.redis_ssl_ca_file:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_file
    return options


def bearer_ok(header: str | None, token: str) -> bool:
    """True when no token is configured, or `header` is `Bearer <token>` (constant-time compare)."""
    if not token:
        return True
    scheme, _, given = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # equal-length digests: the comparison time reveals neither the token nor its length
    return hmac.compare_digest(hashlib.sha256(given.strip().encode("utf-8", "replace")).digest(),
                               hashlib.sha256(token.encode()).digest())


def challenge(header: str | None) -> str:
    """The WWW-Authenticate value of a 401 (RFC 6750: invalid_token when a token was sent)."""
    return 'Bearer realm="engage", error="invalid_token"' if header else 'Bearer realm="engage"'


def refusal(header: str | None, token: str) -> tuple[dict[str, object], dict[str, str]] | None:
    """The guard of every guarded route of every server: None when `header` passes, else the JSON
    body and headers of its 401."""
    if bearer_ok(header, token):
        return None
    return UNAUTHORIZED, {"WWW-Authenticate": challenge(header)}


def auth_header(settings: Settings) -> dict[str, str]:
    """What a client of the worker's API sends."""
    return {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
