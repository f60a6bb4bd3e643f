"""The scoring core depends on what it declares, and the product does not import the dev stack.

The core may import the standard library, itself, and the pure libraries named in
`CORE_LIBRARIES` (docs/development.md, Dependencies, says why each is there): an allow-list, so a
new dependency fails here until it is declared.
"""

import ast
import pathlib
import subprocess
import sys

import scoring
import streams

CORE_LIBRARIES = ("orjson",)          # JSON decoding and encoding, in C: no I/O, no framework
FORBIDDEN = ("faust", "aiokafka", "kafka", "redis", "prometheus_client", "mode", "aiohttp")
CORE = pathlib.Path(scoring.__file__).parent
EDGE = pathlib.Path(streams.__file__).parent
DEV_STACK_USERS = ("cli.py", "demo.py")   # developer commands: they pass the local stack's addresses in


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import statement in `path`, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_the_core_imports_only_the_standard_library_itself_and_its_declared_libraries():
    allowed = set(sys.stdlib_module_names) | {"scoring", *CORE_LIBRARIES}
    offenders = [f"{path.name}:{line} imports {name}" for path in sorted(CORE.rglob("*.py"))
                 for line, name in imports_of(path) if name not in allowed]
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) >= 10  # the walk really saw the package


def test_the_allow_list_check_sees_an_undeclared_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef f():\n    import msgspec\n    from scoring import formulas\n")
    allowed = set(sys.stdlib_module_names) | {"scoring", *CORE_LIBRARIES}
    assert [name for _, name in imports_of(module) if name not in allowed] == ["msgspec"]


def test_the_product_does_not_import_the_dev_stack():
    """Only the developer commands reach the local stack; the worker, store and settings never do."""
    offenders = [f"{path.name}:{line}" for path in sorted(EDGE.rglob("*.py")) if path.name not in DEV_STACK_USERS
                 for line, name in imports_of(path) if name == "devstack"]
    assert offenders == []
    assert any(name == "devstack" for path in DEV_STACK_USERS for _, name in imports_of(EDGE / path))


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


def test_the_check_itself_detects_a_forbidden_module():
    code = "import scoring, redis, sys; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
