"""The scoring core must not depend on any service client or framework."""

import ast
import pathlib
import subprocess
import sys

import scoring

FORBIDDEN = ("faust", "aiokafka", "kafka", "redis", "prometheus_client", "mode", "aiohttp")
CORE = pathlib.Path(scoring.__file__).parent


def test_no_forbidden_import_statement_anywhere_in_scoring():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert offenders == []
    assert len(list(CORE.rglob("*.py"))) >= 10  # the walk really saw the package


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
