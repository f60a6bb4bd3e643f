"""The compiled core is the interpreted core: one set of rules, built two ways (scoring/build.py).

Random scenarios (late events, duplicates across batches, membership churn, sessions, bad
messages, time passing, a config change) run here on the compiled core and, in a reference
process, on the interpreted one; every result, rejection, delta, standing, due time, alert, card,
KPI and stored customer must be the same, with ints kept ints (core_runs.dump tells them apart).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from scoring import build
from scoring.timeutil import DAY, HOUR
from tests.scoring import core_runs
from tests.scoring.test_properties import BASE, event_lists, instants

ROOT = Path(__file__).resolve().parents[2]

# messages the decoder must turn away, each for its own reason
BAD = (b"{", b"[]", b'{"event_id": "x", "customer_id": "c0", "type": "like"}',
       b'{"event_id": "x", "customer_id": "c0", "type": "no_such_type", "ts": 1}',
       b'{"event_id": "x", "customer_id": 7, "type": "like", "ts": "2026-09-04T00:00:00Z"}')


def test_the_compiled_core_runs_here():
    """The README's commands built it (scripts/bootstrap): every per-event module came from its
    extension, and the choice says so."""
    assert build.CHOSEN == "compiled", build.CHOSEN
    for module in build.COMPILED:
        loader = importlib.import_module(f"scoring.{module}").__spec__.loader
        assert isinstance(loader, importlib.machinery.ExtensionFileLoader), module


@pytest.fixture(scope="module")
def reference():
    """The interpreted core, in a process of its own for the whole module."""
    process = subprocess.Popen([sys.executable, "-m", "tests.scoring.core_runs"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={**os.environ, "ENGAGE_CORE": "interpreted"})
    chosen = core_runs.receive(process.stdout)
    assert chosen == build.ON_REQUEST == "interpreted: ENGAGE_CORE=interpreted"

    def run(scenario):
        core_runs.send(process.stdin, scenario)
        status, answer = core_runs.receive(process.stdout)
        assert status == "ok", f"the interpreted core failed: {answer}"
        return answer

    yield run
    process.stdin.close()
    process.wait(timeout=30)


@st.composite
def scenarios(draw):
    steps = []
    now = BASE
    config = "short"
    for _ in range(draw(st.integers(1, 5), label="steps")):
        now += draw(instants(0, 2 * DAY), label="time passing")
        events = draw(event_lists(instants(now - 10 * HOUR, now + HOUR)), label="events")
        raws = [orjson.dumps(e) for e in events]
        for _ in range(draw(st.integers(0, 2), label="bad messages")):
            raws.insert(draw(st.integers(0, len(raws))), draw(st.sampled_from(BAD)))
        steps.append(("batch", (now, raws)))
        now += draw(instants(0, 3 * DAY), label="until the due re-score")
        if draw(st.integers(0, 3)) == 0:
            config = "changed" if config == "short" else "short"
        steps.append(("due", (now, config)))
        steps.append(("read", now))
    return steps


@settings(max_examples=150, deadline=None)
@given(scenario=scenarios())
def test_the_compiled_core_computes_exactly_what_the_interpreted_one_does(reference, scenario):
    here = core_runs.run(scenario)
    there = reference(scenario)
    assert len(here) == len(there)
    for step, (mine, theirs) in enumerate(zip(here, there, strict=True)):
        assert mine == theirs, f"step {step} ({scenario[step][0]}) differs"


def test_the_dump_tells_an_int_from_a_float_and_keeps_order():
    """What the comparison rests on: 78 and 78.0, or two orders of a dict, are not the same dump."""
    assert core_runs.dump({"cer": 78}) != core_runs.dump({"cer": 78.0})
    assert core_runs.dump({"a": 1, "b": 2}) != core_runs.dump({"b": 2, "a": 1})
    assert core_runs.dump([1, (2, 3)]) != core_runs.dump([1, [2, 3]])


def chosen_in(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "ENGAGE_CORE"}
    return subprocess.run([sys.executable, "-c", "from scoring import build; print(build.CHOSEN)"], cwd=cwd,
                          capture_output=True, text=True, env={**clean, "PYTHONPATH": str(cwd), **env}, timeout=60)


def test_a_stale_build_never_runs_and_compiled_on_demand_refuses_it(tmp_path):
    """Source changed after the build: the extensions hold the old rules, so the source runs, and
    saying ENGAGE_CORE=compiled stops the process with the reason instead."""
    subprocess.run(["cp", "-r", str(ROOT / "scoring"), str(tmp_path / "scoring")], check=True)
    assert chosen_in(tmp_path).stdout.strip() == "compiled"
    state = tmp_path / "scoring" / "state.py"
    state.write_text(state.read_text() + "\n# changed\n")
    assert chosen_in(tmp_path).stdout.strip() == (
        "interpreted: stale: state changed since the build (scripts/bootstrap rebuilds it)")
    refused = chosen_in(tmp_path, ENGAGE_CORE="compiled")
    assert refused.returncode != 0 and "ENGAGE_CORE=compiled, but the compiled core is stale" in refused.stderr


def test_without_extensions_the_source_runs_and_a_bad_choice_names_the_key(tmp_path):
    subprocess.run(["cp", "-r", str(ROOT / "scoring"), str(tmp_path / "scoring")], check=True)
    for extension in (tmp_path / "scoring").glob("*.so"):
        extension.unlink()
    assert chosen_in(tmp_path).stdout.strip().startswith("interpreted: not built")
    bad = chosen_in(tmp_path, ENGAGE_CORE="fast")
    assert bad.returncode != 0 and "ENGAGE_CORE='fast': expected one of compiled, interpreted" in bad.stderr
