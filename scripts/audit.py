"""Audit the locked dependencies (constraints.txt) against PyPI's known-vulnerability data.

    .venv/bin/python scripts/audit.py            # report; exit 1 on a known vulnerability
    .venv/bin/python scripts/audit.py --strict   # also exit 1 when a pin could not be audited

pip-audit asks PyPI's per-release JSON endpoint (or OSV) for each pin. Where those answer,
this script asks them too; where only the per-project endpoint answers (the case on our
build machines), that endpoint's `vulnerabilities` list describes the project's newest
release, so it audits exactly the pins that are the newest release and reports the others
as not audited, naming the newer release. It never reports a pin as clean without data.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


@dataclass
class Finding:
    name: str
    version: str
    audited: bool
    vulnerabilities: list[dict] = field(default_factory=list)
    note: str = ""


def pins(path: Path) -> list[tuple[str, str]]:
    found = [PIN.match(line.strip()) for line in path.read_text().splitlines()]
    return [(m.group(1), m.group(2)) for m in found if m]


def _get(url: str, timeout: float) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise


def audit_pin(name: str, version: str, index: str = "https://pypi.org/pypi", timeout: float = 30.0) -> Finding:
    release = _get(f"{index}/{name}/{version}/json", timeout)
    if release is not None:
        return Finding(name, version, True, _live(release), "per-release data")
    project = _get(f"{index}/{name}/json", timeout)
    if project is None:
        return Finding(name, version, False, note="not found on the index")
    newest = project["info"]["version"]
    if _normal(newest) == _normal(version):
        return Finding(name, version, True, _live(project), "newest release")
    return Finding(name, version, False, note=f"not the newest release ({newest}); no per-release data here")


def _live(payload: dict) -> list[dict]:
    return [v for v in payload.get("vulnerabilities") or [] if not v.get("withdrawn")]


def _normal(version: str) -> str:
    return version.lower().lstrip("v")


def audit(path: Path = ROOT / "constraints.txt", workers: int = 8) -> list[Finding]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda pin: audit_pin(*pin), pins(path)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument("--strict", action="store_true", help="fail when a pin could not be audited")
    args = parser.parse_args(argv)
    findings = audit(args.constraints)
    vulnerable = [f for f in findings if f.vulnerabilities]
    unaudited = [f for f in findings if not f.audited]
    for f in sorted(findings, key=lambda f: f.name.lower()):
        ids = ", ".join(v["id"] + (f" (fixed in {', '.join(v['fixed_in'])})" if v.get("fixed_in") else "")
                        for v in f.vulnerabilities)
        state = "VULNERABLE " + ids if ids else ("ok" if f.audited else "NOT AUDITED")
        print(f"{f.name:28} {f.version:14} {state}  [{f.note}]")
    print(f"{len(findings)} pins: {len(findings) - len(unaudited)} audited, {len(vulnerable)} vulnerable, "
          f"{len(unaudited)} not audited")
    return 1 if vulnerable or (args.strict and unaudited) else 0


if __name__ == "__main__":
    sys.exit(main())
