"""Dependency audit (scripts/audit.py): the locked pins against PyPI's vulnerability data.

The first test asks the real PyPI. The others check the audit's own rules on a small local
index that serves PyPI-shaped JSON, so that each rule is seen to fail when it should.
"""

from __future__ import annotations

import json
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import audit  # noqa: E402


@pytest.mark.network
def test_no_locked_dependency_has_a_known_vulnerability():
    findings = audit.audit()
    assert len(findings) == len(audit.pins(audit.ROOT / "constraints.txt")) > 40
    vulnerable = {f"{f.name}=={f.version}": [v["id"] for v in f.vulnerabilities] for f in findings if f.vulnerabilities}
    assert not vulnerable, f"known vulnerabilities in locked dependencies: {vulnerable}"
    unaudited = [f"{f.name}=={f.version} ({f.note})" for f in findings if not f.audited]
    assert len(unaudited) <= len(findings) // 4, f"too few pins could be audited: {unaudited}"
    if unaudited:
        warnings.warn(f"not audited here: {', '.join(unaudited)}", stacklevel=1)


VULN = {"id": "PYSEC-0000-1", "fixed_in": ["2.0"], "withdrawn": None, "aliases": [], "details": "", "summary": ""}


@pytest.fixture
def index():
    """A local index: /pypi/<name>/json answers; /pypi/<name>/<version>/json only for 'fresh'."""
    projects = {
        "clean": {"info": {"version": "1.0"}, "vulnerabilities": []},
        "holey": {"info": {"version": "1.0"}, "vulnerabilities": [VULN]},
        "withdrawn": {"info": {"version": "1.0"}, "vulnerabilities": [{**VULN, "withdrawn": "2026-01-01"}]},
        "moved-on": {"info": {"version": "3.0"}, "vulnerabilities": []},
        "fresh": {"info": {"version": "3.0"}, "vulnerabilities": []},
    }
    per_release = {("fresh", "1.0"): {"info": {"version": "1.0"}, "vulnerabilities": [VULN]}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            parts = self.path.strip("/").split("/")   # pypi, name, [version,] json
            body = per_release.get((parts[1], parts[2])) if len(parts) == 4 else projects.get(parts[1])
            self.send_response(200 if body else 404)
            self.end_headers()
            if body:
                self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/pypi"
    server.shutdown()


@pytest.mark.parametrize(("name", "audited", "vulnerable"), [
    ("clean", True, False),
    ("holey", True, True),
    ("withdrawn", True, False),       # a withdrawn advisory is no finding
    ("moved-on", False, False),       # older than the newest release, no per-release data: not audited
    ("fresh", True, True),            # per-release data wins over the project's newest release
    ("unknown", False, False),
])
def test_audit_rules(index, name, audited, vulnerable):
    finding = audit.audit_pin(name, "1.0", index=index)
    assert (finding.audited, bool(finding.vulnerabilities)) == (audited, vulnerable), finding


def test_strict_fails_on_an_unaudited_pin_and_both_fail_on_a_vulnerable_one(index, tmp_path, monkeypatch, capsys):
    original = audit.audit_pin
    monkeypatch.setattr(audit, "audit_pin", lambda name, version: original(name, version, index=index))
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("clean==1.0\nmoved-on==1.0\n")
    assert audit.main(["--constraints", str(constraints)]) == 0
    assert audit.main(["--constraints", str(constraints), "--strict"]) == 1
    constraints.write_text("clean==1.0\nholey==1.0  # a comment\n")
    assert audit.main(["--constraints", str(constraints)]) == 1
    assert "VULNERABLE PYSEC-0000-1 (fixed in 2.0)" in capsys.readouterr().out
