"""Full-scan jobs keep to their share of the worker's event loop."""

from __future__ import annotations

from streams.app import DutyCycle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_job_waits_nine_times_its_cost_at_a_ten_percent_share():
    clock = Clock()
    duty = DutyCycle(share=0.1, clock=clock)
    assert duty.due("kpis")                      # never ran: due
    with duty.measure("kpis"):
        clock.now += 2.0                         # the job took 2 s
    assert duty.cost["kpis"] == 2.0
    clock.now += 17.9
    assert not duty.due("kpis")                  # must rest 18 s
    clock.now += 0.1
    assert duty.due("kpis")
    assert duty.due("sweep")                     # jobs are paced independently


def test_a_cheap_job_is_due_again_at_once():
    clock = Clock()
    duty = DutyCycle(share=0.1, clock=clock)
    with duty.measure("kpis"):
        clock.now += 0.001                       # 1 ms: rests 9 ms
    clock.now += 0.005
    assert not duty.due("kpis")
    clock.now += 0.005
    assert duty.due("kpis")
