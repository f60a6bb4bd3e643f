"""The compiled core: the per-event modules of `scoring` (scoring/build.py, COMPILED) built as C
extensions by Cython from the same source files, next to them.

Everything else about the package is in pyproject.toml. Without a C compiler the build is
skipped with one line on stderr and the package installs as source only: the core then runs
interpreted, and says so (scoring/build.py). `ENGAGE_CORE_BUILD=interpreted` skips it on purpose.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CORE = ROOT / "scoring"
DIRECTIVES = {
    "language_level": 3,
    # Python's semantics, not C's: an argument annotated `float` stays the object it was given
    # (with typing from annotations, Cython would turn an int 78 into a C double, 78.0)
    "annotation_typing": False,
}


def build_module(name: str) -> object:
    """A constant of scoring/build.py, read without importing it (importing chooses a build)."""
    tree = ast.parse((CORE / "build.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"scoring/build.py has no {name}")


def extensions() -> list:
    if os.environ.get("ENGAGE_CORE_BUILD", "").strip().lower() == "interpreted":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("setup.py: Cython is not installed; the core is installed as source only", file=sys.stderr)
        return []
    sources = [f"scoring/{module}.py" for module in build_module("COMPILED")]
    return cythonize(sources, compiler_directives=DIRECTIVES, build_dir="build/cython", quiet=True)


class CompiledCore(build_ext):
    """Builds the extensions in parallel, tolerates a missing compiler, and writes the manifest
    that ties the extensions to the source they were built from."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as error:   # no compiler, no Python headers: the distutils errors vary
            print(f"setup.py: the compiled core was not built ({error}); the core runs interpreted",
                  file=sys.stderr)
            return
        target = CORE if self.inplace else Path(self.build_lib) / "scoring"
        target.mkdir(parents=True, exist_ok=True)
        lines = [f"{hashlib.sha256((CORE / f'{m}.py').read_bytes()).hexdigest()} {m}"
                 for m in build_module("COMPILED")]
        (target / build_module("MANIFEST")).write_text("\n".join(lines) + "\n")


setup(ext_modules=extensions(), cmdclass={"build_ext": CompiledCore})
