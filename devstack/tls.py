"""The secure stack's TLS material and credentials, and what its clients are told."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

from devstack.processes import Service, StackError, ensure_binary


def secure_material(directory: Path, log: Callable[[str], None]) -> dict[str, str]:
    """A CA, a server key and certificate signed by it (SAN 127.0.0.1 and localhost) and random
    passwords, made once per stack directory with openssl; returns where they are."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    files = {name: str(directory / name) for name in
             ("ca.pem", "server.key", "server.crt", "server.pem", "broker.password", "kafka.password",
              "redis.password")}
    if not all(Path(path).exists() for path in files.values()):
        openssl = ensure_binary("openssl", "openssl", log)
        log("tls: making a CA and a server certificate (SAN 127.0.0.1, localhost) ...")

        def run(*args: str) -> None:
            result = subprocess.run([openssl, *args], capture_output=True, text=True, cwd=directory)
            if result.returncode != 0:
                raise StackError(f"openssl {args[0]} failed:\n{result.stderr[-2000:]}")

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
            "-subj", "/CN=engage local test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost")
        (directory / "server.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "825", "-extfile", "server.ext")
        # Kafka's PEM keystore: the PKCS#8 key, then the certificate chain, in one file
        pem = directory / "server.pem"
        pem.touch(mode=0o600)
        pem.write_text(read_secret(files["server.key"]) + "\n" + read_secret(files["server.crt"]) + "\n" + read_secret(files["ca.pem"]) + "\n")
        for name in ("broker.password", "kafka.password", "redis.password"):
            path = directory / name
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(16) + "\n")
        for name in ("ca.key", "server.key"):
            (directory / name).chmod(0o600)
    return {
        "ca_file": files["ca.pem"], "server_key": files["server.key"], "server_cert": files["server.crt"],
        "server_pem": files["server.pem"],
        "broker_username": "broker", "broker_password_file": files["broker.password"],
        "kafka_username": "engage", "kafka_password_file": files["kafka.password"],
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "redis_username": "engage", "redis_password_file": files["redis.password"],
    }


def security_env(security: dict[str, str]) -> dict[str, str]:
    """The ENGAGE_* security settings of a client of a secure stack (empty for a plain one)."""
    if not security:
        return {}
    return {
        "ENGAGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "ENGAGE_KAFKA_SASL_MECHANISM": security["kafka_sasl_mechanism"],
        "ENGAGE_KAFKA_USERNAME": security["kafka_username"],
        "ENGAGE_KAFKA_PASSWORD_FILE": security["kafka_password_file"],
        "ENGAGE_KAFKA_SSL_CAFILE": security["ca_file"],
        "ENGAGE_REDIS_USERNAME": security["redis_username"],
        "ENGAGE_REDIS_PASSWORD_FILE": security["redis_password_file"],
        "ENGAGE_REDIS_SSL_CA_FILE": security["ca_file"],
    }


def client_options(service: Service, security: dict[str, str] | None, family: str) -> dict[str, object]:
    """The probe's client options, from the same settings and helper every client uses."""
    if not security:
        return {}
    from streams.security import kafka_options, redis_options
    from streams.settings import load_settings

    address = {"kafka": "ENGAGE_KAFKA_BOOTSTRAP", "redis": "ENGAGE_REDIS_URL"}[family]
    env = {"ENGAGE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ENGAGE_REDIS_URL": "rediss://127.0.0.1:1/0",
           **security_env(security), address: service.address}
    settings = load_settings(env=env)
    return kafka_options(settings) if family == "kafka" else redis_options(settings)


def read_secret(path: str) -> str:
    return Path(path).read_text().strip()
