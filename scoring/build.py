"""Which build of the core's rules runs: compiled or interpreted, from the same source files.

The modules of `COMPILED` are also built as C extensions by Cython (setup.py, from these very
files, with Python's semantics kept: ints stay ints, errors stay errors), so there is one set of
rules and two ways to run it. Python imports an extension before a source file of the same name,
so a built core runs compiled by itself. The source runs instead, and this module says why, when:

* `ENGAGE_CORE=interpreted` asks for it (the reference in the differential test, a comparison in
  the benchmark, a debugger that steps through the rules);
* no extension was built (no C compiler where the package was installed);
* an extension is stale: its source changed after the build (`scripts/bootstrap` rebuilds). A
  stale extension would run the old rules, so none of them runs.

`ENGAGE_CORE=compiled` makes a missing or stale build an error instead. The choice is made
once, before the first rule is imported (`scoring/__init__.py`), and holds for the process.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

# The per-event path: decode, gate, apply, window counts, scores, standing, alerts, deltas.
# Config loading, KPIs over everyone and history run once per load or read: they stay source.
COMPILED = ("account_alerts", "aggregation", "alert_routes", "alert_work", "alerts", "contributions", "deltas", "engine", "events", "history_import",
            "explain", "formulas", "measures", "messages", "reasons", "scores", "segment_kpis", "standing", "state", "timeutil",
            "traits",
            "windows")
MANIFEST = "compiled.sha256"     # written by the build: "<sha256 of the source> <module>" per line
CHOICES = ("compiled", "interpreted")
COMPILED_BUILD = "compiled"
ON_REQUEST = "interpreted: ENGAGE_CORE=interpreted"   # what CHOSEN says when the source was asked for
HERE = Path(__file__).resolve().parent


class CoreBuildError(RuntimeError):
    """ENGAGE_CORE names no build, or asks for a compiled core that is not there."""


def source_digest(module: str) -> str:
    return hashlib.sha256((HERE / f"{module}.py").read_bytes()).hexdigest()


def _built() -> tuple[bool, str]:
    """(every compiled module present and current, why not)."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    missing = [m for m in COMPILED if not any((HERE / f"{m}{s}").exists() for s in suffixes)]
    if len(missing) == len(COMPILED):
        return False, "not built (no C compiler where it was installed?)"
    if missing:
        return False, f"partly built (missing: {', '.join(missing)})"
    manifest = HERE / MANIFEST
    if not manifest.exists():
        return False, f"built without its manifest ({MANIFEST})"
    digests = dict(reversed(line.split(None, 1)) for line in manifest.read_text().splitlines() if line.strip())
    stale = [m for m in COMPILED if digests.get(m) != source_digest(m)]
    if stale:
        return False, f"stale: {', '.join(stale)} changed since the build (scripts/bootstrap rebuilds it)"
    return True, ""


class _SourceFinder:
    """Finds the core's modules as source files, ahead of their extensions."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        package, _, module = name.rpartition(".")
        if package != __package__ or module not in COMPILED:
            return None
        return importlib.util.spec_from_file_location(name, HERE / f"{module}.py")


def choose() -> str:
    """Decide the build for this process (once); returns what runs: "compiled" or
    "interpreted: <why>"."""
    wanted = os.environ.get("ENGAGE_CORE", "").strip().lower()
    if wanted and wanted not in CHOICES:
        raise CoreBuildError(f"ENGAGE_CORE={wanted!r}: expected one of {', '.join(CHOICES)}")
    built, why = _built()
    if wanted == "compiled" and not built:
        raise CoreBuildError(f"ENGAGE_CORE=compiled, but the compiled core is {why}")
    if built and wanted != "interpreted":
        return COMPILED_BUILD
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())
    return ON_REQUEST if wanted == "interpreted" else f"interpreted: {why}"


CHOSEN = choose()
