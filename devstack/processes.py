"""Processes of the local stack: spawning, readiness, stopping, ports and Debian packages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 120.0


class StackError(RuntimeError):
    """A service could not be provisioned or did not become ready; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("ENGAGE_CACHE_DIR", Path.home() / ".cache" / "engage"))


@dataclass
class Service:
    name: str
    address: str                  # bootstrap host:port, or URL
    pid: int | None = None        # None: not started by us (external)
    port: int | None = None
    log: str | None = None

    def alive(self) -> bool:
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _is_not_zombie(self.pid)


_apt_updated = False


def ensure_binary(binary: str, package: str, log: Callable[[str], None] = lambda _: None) -> str:
    """The path of `binary`, installing Debian's `package` first when it is missing."""
    global _apt_updated
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if found:
        return found
    apt = shutil.which("apt-get")
    if not apt or os.geteuid() != 0:
        raise StackError(f"'{binary}' is missing: install the Debian package '{package}' (needs root)")
    log(f"installing Debian package {package} ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run([apt, "update", "-qq"], check=False, capture_output=True, env=env)
        _apt_updated = True
    result = subprocess.run([apt, "install", "-y", "-qq", "--no-install-recommends", package],
                            capture_output=True, text=True, env=env)
    found = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if result.returncode != 0 or not found:
        raise StackError(f"installing {package} failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return found


def spawn(command: list[str], log_path: Path, cwd: Path) -> int:
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "command.json").write_text(json.dumps(command))  # for `restart` (Redis rewrites its cmdline)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, start_new_session=True)
    return process.pid


def wait_ready(service: Service, ready: Callable[[Service], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not service.alive():
            raise StackError(f"{service.name} exited during start-up; last log lines:\n{tail(service.log)}")
        if ready(service):
            return
        time.sleep(0.3)
    raise StackError(f"{service.name} not ready after {READY_TIMEOUT_S:.0f} s; last log lines:\n{tail(service.log)}")


def stop(service: Service, grace_s: float = 30.0) -> None:
    """Stops one service: SIGTERM, then SIGKILL if it still runs after `grace_s`."""
    stop_all([service], grace_s)


def stop_all(services: list[Service], grace_s: float = 30.0) -> None:
    """Stops these services at once: SIGTERM to each, then SIGKILL to any still running after `grace_s`."""
    for service in services:
        _signal(service, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(service.alive() for service in services):
        for service in services:
            reap(service.pid)   # type: ignore[arg-type]
        time.sleep(0.1)
    for service in services:
        if service.alive():
            _signal(service, signal.SIGKILL)
        reap(service.pid)   # type: ignore[arg-type]


def _signal(service: Service, signum: signal.Signals) -> None:
    """The signal to the service's process group (it may be gone already)."""
    assert service.pid is not None
    try:
        os.killpg(service.pid, signum)
    except ProcessLookupError:
        pass


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_not_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


def configured_port(env_name: str) -> int:
    """The port `env_name` sets, or a free one."""
    configured = os.environ.get(env_name)
    if configured:
        try:
            port = int(configured)
        except ValueError:
            raise StackError(f"{env_name} must be a port number (got {configured!r})") from None
        if not 1 <= port <= 65535:
            raise StackError(f"{env_name} must be a port number 1..65535 (got {port})")
        return port
    return free_port()


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: str | None, lines: int = 30) -> str:
    if not path or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
