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
#
# Started on first use and shared by every test process of the session: under pytest-xdist each
# worker process finds the one its first user started (a file lock orders them), and the session's
# controller stops them all at the end. Tests isolate themselves by unique prefixes (`unique`).

import contextlib as _contextlib
import fcntl as _fcntl
import signal as _signal
import uuid as _uuid
from pathlib import Path as _Path

import pytest

SHARED = ("stack", "secure-stack", "redis-cluster")    # the shared services' directories


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# A SIGTERM (CI time-out, `timeout`, a closed terminal) becomes an interrupt, so the
# session fixtures still stop the Kafka, Redis and worker processes they started.
_signal.signal(_signal.SIGTERM, _interrupt_on_sigterm)


def _session_root(tmp_path_factory) -> _Path:
    """The session's own temporary directory: the controller's, also under an xdist worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@_contextlib.contextmanager
def _shared(tmp_path_factory, name: str):
    """The directory of a service shared by the session's processes, held under its lock."""
    directory = _session_root(tmp_path_factory) / name
    directory.mkdir(exist_ok=True)
    with open(directory.parent / f"{name}.lock", "w") as lock:
        _fcntl.flock(lock, _fcntl.LOCK_EX)
        yield directory


def _stop_shared(root: _Path) -> None:
    from devstack import stack as local

    for name in SHARED:
        if (root / name / "stack.json").exists():
            if name == "redis-cluster":
                local.cluster_down(root / name, purge=True)
            local.down(root / name, purge=True)


def pytest_sessionfinish(session):
    """The one process that outlives the others (xdist's controller, or pytest alone) stops them."""
    if not hasattr(session.config, "workerinput") and hasattr(session.config, "_tmp_path_factory"):
        _stop_shared(session.config._tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The local Kafka + Redis stack of this test session (its own directory and ports).

    Set ENGAGE_TEST_STACK_DIR to reuse a stack across sessions (it is then left running).
    """
    from devstack import stack as local

    reuse = os.environ.get("ENGAGE_TEST_STACK_DIR")
    if reuse:
        return local.up(_Path(reuse), log=print)
    with _shared(tmp_path_factory, "stack") as directory:
        return local.up(directory, log=print)


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory):
    """Kafka (SASL_SSL listener, SCRAM-SHA-512) and Redis (TLS only, ACL user) of their own, with
    a CA of their own: started on first use, stopped at the end of the session.
    `secure_stack.client_env()` holds the ENGAGE_* settings of their clients (passwords by file)."""
    from devstack import stack as local

    with _shared(tmp_path_factory, "secure-stack") as directory:
        return local.up(directory, secure=True, log=print)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A local Redis Cluster of its own (three masters, no replicas): started on first use,
    stopped at the end of the session. `redis_cluster.redis_cluster_url` is a startup node.
    Shared: a test that restarts a node or changes a master's settings uses `own_redis_cluster`."""
    from devstack import stack as local

    with _shared(tmp_path_factory, "redis-cluster") as directory:
        return local.cluster_up(directory, log=print)


@pytest.fixture(scope="module")
def own_redis_cluster(tmp_path_factory):
    """A Redis Cluster for one module alone: its tests restart nodes or set maxmemory."""
    from devstack import stack as local

    directory = tmp_path_factory.mktemp("own-redis-cluster")
    try:
        yield local.cluster_up(directory, log=print)
    finally:
        local.cluster_down(directory, purge=True)


@pytest.fixture(scope="session")
def prometheus_stack(stack, tmp_path_factory):
    """The same stack plus a real Prometheus (started on first use)."""
    from devstack import stack as local

    if os.environ.get("ENGAGE_TEST_STACK_DIR"):
        return local.up(_Path(stack.directory), prometheus=True, log=print)
    with _shared(tmp_path_factory, "stack") as directory:
        return local.up(directory, prometheus=True, log=print)


@pytest.fixture
def unique():
    """A unique prefix for this test's topics, consumer groups and Redis keys."""
    return f"t{_uuid.uuid4().hex[:10]}"


def pytest_configure(config):
    """The `brokers` marker: needs a three-broker Kafka cluster of its own (`./scripts/test -m brokers`)."""
    config.addinivalue_line("markers", "brokers: starts a three-broker Kafka cluster of its own "
                                       "(not in the README test command: ./scripts/test -m brokers)")


@pytest.fixture
def stack_view(stack, tmp_path):
    """A state directory of its own naming the session's running stack (a copy of its stack.json):
    for commands that start or reuse a stack and write its state (`engage demo`, `engage stack up`),
    so that they never rewrite the shared stack's file while other test processes read it."""
    view = tmp_path / "stack-view"
    view.mkdir()
    (view / "stack.json").write_text((_Path(stack.directory) / "stack.json").read_text())
    return view
