"""/readyz notices a worker that owns waiting messages but consumes none."""

from __future__ import annotations

from streams.worker.stall import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waiting_messages_without_progress_become_a_stall_after_the_limit():
    clock = Clock()
    watch = StallWatch(after_s=60, clock=clock)
    watch.observe(lag=500)
    clock.now += 59.9
    assert watch.stalled_for() is None
    clock.now += 0.1
    assert watch.stalled_for() == 60.0
    watch.progressed()                     # a batch was handled
    assert watch.stalled_for() is None


def test_an_idle_worker_with_nothing_to_do_is_not_stalled():
    clock = Clock()
    watch = StallWatch(after_s=60, clock=clock)
    watch.observe(lag=0)
    clock.now += 3600
    assert watch.stalled_for() is None     # no lag: idle, not stuck
    watch.observe(lag=0)                   # the timer keeps seeing no lag ...
    clock.now += 5
    watch.observe(lag=10)                  # ... then traffic arrives: the clock starts at the last idle look
    assert watch.stalled_for() is None
    clock.now += 60
    assert watch.stalled_for() == 65.0
