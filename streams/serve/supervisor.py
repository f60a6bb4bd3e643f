"""`engage api --processes N`: N processes serving one port, restarted when one dies.

One `engage api` process answers reads on one core: its time goes to redis-py and JSON on its
event loop, not to Redis. Each process here binds the same port with SO_REUSEPORT, so the
kernel spreads connections over them; they share nothing but Redis (each keeps its own
shared-KPI answer fresh). The parent only serves as their supervisor: a process that dies is
started again, and SIGTERM or SIGINT stops them all; each stops by itself when the supervisor
is gone (killed outright). A process that dies right after its start twice in a row (a port in
use, Redis refusing the layout) stops the whole group with the reason, rather than restarting
in a loop.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

EARLY_EXIT_S = 5.0        # a process gone sooner than this after its start counts as failing to start


class Supervisor:
    def __init__(self, count: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
        self.count = count
        self.target, self.args = target, args
        self._context = multiprocessing.get_context("spawn")    # a fresh interpreter: no inherited loop or sockets
        self.children: dict[int, multiprocessing.process.BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._early: dict[int, int] = {}
        self._stopping = False

    def run(self) -> int:
        """Serve until asked to stop (0) or until a process cannot start (1)."""
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.count):
                self._start(slot)
            while not self._stopping:
                sentinels = {child.sentinel: slot for slot, child in self.children.items()}
                for ready in multiprocessing.connection.wait(list(sentinels), timeout=1.0):
                    if self._stopping:
                        break
                    if not self._restart(sentinels[ready]):   # type: ignore[index]
                        return 1
            return 0
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _start(self, slot: int) -> None:
        child = self._context.Process(target=self.target, args=self.args, name=f"engage-api-{slot}")
        child.start()
        self.children[slot], self._started[slot] = child, time.monotonic()
        log.info("engage api: process %d started (pid %s)", slot, child.pid)

    def _restart(self, slot: int) -> bool:
        child = self.children[slot]
        child.join()
        early = time.monotonic() - self._started[slot] < EARLY_EXIT_S
        self._early[slot] = self._early.get(slot, 0) + 1 if early else 0
        if self._early[slot] >= 2:
            log.error("engage api: process %d exited with code %s twice within %.0f s of its start; stopping",
                      slot, child.exitcode, EARLY_EXIT_S)
            return False
        log.warning("engage api: process %d (pid %s) exited with code %s; starting it again",
                    slot, child.pid, child.exitcode)
        self._start(slot)
        return True

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _stop_all(self, grace_s: float = 10.0) -> None:
        for child in self.children.values():
            if child.is_alive():
                child.terminate()              # SIGTERM: aiohttp closes its server and the Redis pool
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
