"""Shared test setup.

Hypothesis profiles: "ci" (more examples, used by scripts/test) and "dev" (quick, the
default when HYPOTHESIS_PROFILE is unset). No deadline in either: CI machines are slow
and uneven, and the suite's budget is enforced by example counts instead.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# --- real services, started once per test session -------------------------------------

import signal as _signal
import uuid as _uuid
from pathlib import Path as _Path

import pytest


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# A SIGTERM (CI time-out, `timeout`, a closed terminal) becomes an interrupt, so the
# session fixtures still stop the Kafka, Redis and worker processes they started.
_signal.signal(_signal.SIGTERM, _interrupt_on_sigterm)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The local Kafka + Redis stack for this test session (its own directory and ports).

    Set ENGAGE_TEST_STACK_DIR to reuse a stack across sessions (it is then left running).
    """
    from devstack import stack as local

    reuse = os.environ.get("ENGAGE_TEST_STACK_DIR")
    directory = _Path(reuse) if reuse else tmp_path_factory.mktemp("stack")
    running = local.up(directory, log=print)
    yield running
    if not reuse:
        local.down(directory, purge=True)


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory):
    """Kafka (SASL_SSL listener, SCRAM-SHA-512) and Redis (TLS only, ACL user) of their own, with
    a CA of their own: started on first use, stopped at the end of the session.
    `secure_stack.client_env()` holds the ENGAGE_* settings of their clients (passwords by file)."""
    from devstack import stack as local

    directory = tmp_path_factory.mktemp("secure-stack")
    try:
        yield local.up(directory, secure=True, log=print)
    finally:
        local.down(directory, purge=True)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A local Redis Cluster of its own (three masters, no replicas): started on first use,
    stopped at the end of the session. `redis_cluster.redis_cluster_url` is a startup node."""
    from devstack import stack as local

    directory = tmp_path_factory.mktemp("redis-cluster")
    try:
        yield local.cluster_up(directory, log=print)
    finally:
        local.cluster_down(directory, purge=True)


@pytest.fixture(scope="session")
def prometheus_stack(stack):
    """The same stack plus a real Prometheus (started on first use)."""
    from devstack import stack as local

    return local.up(_Path(stack.directory), prometheus=True, log=print)


@pytest.fixture
def unique():
    """A unique prefix for this test's topics, consumer groups and Redis keys."""
    return f"t{_uuid.uuid4().hex[:10]}"


def pytest_configure(config):
    """The `brokers` marker: needs a three-broker Kafka cluster of its own (`./scripts/test -m brokers`)."""
    config.addinivalue_line("markers", "brokers: starts a three-broker Kafka cluster of its own "
                                       "(not in the README test command: ./scripts/test -m brokers)")
