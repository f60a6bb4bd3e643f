"""The import graph: the core is pure, the edge's rooms have one-way doors, the product never
imports the dev tools, and nothing imports in a circle.

Read from the source (every import statement, nested ones too), with no exemption by file name:

* `scoring` imports the standard library, itself and the pure libraries of `CORE_LIBRARIES`
  (docs/development.md, Dependencies, says why each is there): an allow-list, so a new
  dependency fails here until it is declared;
* `streams` never imports `devstack`, `benchmarks` or `tests`;
* a room of `streams` imports only the rooms `DOORS` names for it (worker, serve and sink reach
  state, the floor and the core, never each other; state reaches the floor; only `processes`
  and `cli`, the top, reach every room);
* no cycle among the product's modules;
* a product module over `LONG` lines says why in its docstring ("Longer than ...").
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import scoring
import streams

CORE_LIBRARIES = ("orjson",)          # JSON decoding and encoding, in C: no I/O, no framework
FORBIDDEN = ("faust", "aiokafka", "kafka", "redis", "prometheus_client", "mode", "aiohttp")
ROOT = pathlib.Path(scoring.__file__).parent.parent
CORE = ROOT / "scoring"
EDGE = pathlib.Path(streams.__file__).parent
DEV_TOOLS = ("devstack", "benchmarks", "tests")
LONG = 400
DOORS = {                                     # room -> the rooms it may import (itself always)
    "floor": {"scoring"},
    "state": {"floor", "scoring"},
    "worker": {"state", "floor", "scoring"},
    "serve": {"state", "floor", "scoring"},
    "sink": {"state", "floor", "scoring"},     # what was done about an alert, in Redis
    "top": {"worker", "serve", "sink", "state", "floor", "scoring"},
}
TOP = ("streams.cli", "streams.processes")


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import statement in `path`, nested ones too.
    `from package import name` counts as `package.name` when that is a module of ours."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.append((node.lineno, candidate if module_path(candidate) else node.module))
    return found


def module_path(dotted: str) -> pathlib.Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def dotted_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    if module.split(".")[0] == "scoring":
        return "scoring"
    if module in TOP:
        return "top"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in DOORS and (ROOT / parts[0] / parts[1]).is_dir():   # a room's package
        return parts[1]
    return "floor"


def product_modules() -> dict[str, pathlib.Path]:
    return {dotted_name(p): p for p in sorted([*EDGE.rglob("*.py"), *CORE.rglob("*.py")])}


def door_violations(modules: dict[str, pathlib.Path], imports=imports_of) -> list[str]:  # type: ignore[no-untyped-def]
    found = []
    for name, path in modules.items():
        if not name.startswith("streams"):
            continue
        room = room_of(name)
        for line, target in imports(path):
            top = target.split(".")[0]
            if top in DEV_TOOLS:
                found.append(f"{name}:{line} imports {target} (a dev tool)")
            elif top == "streams" and target != "streams":
                other = room_of(target)
                if other != room and other not in DOORS[room]:
                    found.append(f"{name}:{line} imports {target} ({room} -> {other})")
    return found


def cycles(modules: dict[str, pathlib.Path]) -> list[list[str]]:
    graph = {name: sorted({t for _, t in imports_of(path) if t in modules and t != name})
             for name, path in modules.items()}
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    return found


def test_the_core_imports_only_the_standard_library_itself_and_its_declared_libraries():
    allowed = set(sys.stdlib_module_names) | {"scoring", *CORE_LIBRARIES}
    offenders = [f"{path.name}:{line} imports {name}" for path in sorted(CORE.rglob("*.py"))
                 for line, name in imports_of(path) if name.split(".")[0] not in allowed]
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) >= 10  # the walk really saw the package


def test_the_allow_list_check_sees_an_undeclared_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef f():\n    import msgspec\n    from scoring import formulas\n")
    allowed = set(sys.stdlib_module_names) | {"scoring", *CORE_LIBRARIES}
    assert [name for _, name in imports_of(module) if name.split(".")[0] not in allowed] == ["msgspec"]


def test_the_edge_rooms_import_only_through_their_doors_and_never_the_dev_tools():
    modules = product_modules()
    assert door_violations(modules) == []
    assert {room_of(name) for name in modules} == {"scoring", *DOORS}   # every room was seen


def test_the_door_check_sees_a_forbidden_import():
    """It fails on the very imports it forbids (the modules are ours, their text made up)."""
    here = {"streams.worker.lifecycle": EDGE / "worker" / "lifecycle.py"}
    made_up = [(1, "streams.serve.api"), (2, "devstack.stack"), (3, "streams.processes"), (4, "streams.state.store")]
    found = door_violations(here, imports=lambda path: made_up)
    assert [f.split(" imports ")[1] for f in found] == [
        "streams.serve.api (worker -> serve)", "devstack.stack (a dev tool)", "streams.processes (worker -> top)"]


def test_no_module_of_the_product_imports_in_a_circle():
    assert cycles(product_modules()) == []


def test_the_cycle_check_sees_a_circle(tmp_path):
    graph = {name: tmp_path / f"{name}.py" for name in ("a", "b", "c")}
    for name, target in (("a", "b"), ("b", "c"), ("c", "a")):
        (tmp_path / f"{name}.py").write_text(f"import {target}\n")
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_a_long_module_says_why_in_its_docstring():
    unexplained = []
    for name, path in product_modules().items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > LONG and "Longer than" not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{name}: {lines} lines")
    assert unexplained == []


def test_importing_every_scoring_module_loads_no_forbidden_module():
    modules = sorted(p.stem for p in CORE.glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('scoring.' + m)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_engage_api_loads_neither_faust_nor_the_worker():
    """The read API's process: its adapter and the serve room, no Kafka framework, no batch lifecycle."""
    code = ("import sys, streams.serve.api_server\n"
            "print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in ('faust', 'aiokafka', 'mode')"
            " or n.startswith('streams.worker'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_check_itself_detects_a_forbidden_module():
    code = "import scoring, redis, sys; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
