"""Prometheus (and promtool) from Debian's `prometheus`, scraping targets from a file."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path

from devstack.processes import Service, configured_port, ensure_binary, spawn


def start(directory: Path, log: Callable[[str], None]) -> Service:
    binary = ensure_binary("prometheus", "prometheus", log)
    port = configured_port("ENGAGE_PROMETHEUS_PORT")
    directory.mkdir(parents=True, exist_ok=True)
    targets = directory / "targets.json"
    if not targets.exists():
        targets.write_text("[]")
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: engagement\n    file_sd_configs:\n"
        f"      - files: ['{targets}']\n        refresh_interval: 1s\n"
    )
    log_path = directory / "prometheus.log"
    pid = spawn(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        log_path, directory,
    )
    return Service("prometheus", f"http://127.0.0.1:{port}", pid, port, str(log_path))


def ready(service: Service) -> bool:
    try:
        with urllib.request.urlopen(f"{service.address}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def set_scrape_targets(directory: Path, targets: list[str]) -> None:
    """Point the Prometheus started in `directory` at these host:port targets (file-based discovery, ~1 s)."""
    payload = [{"targets": targets, "labels": {"job": "engagement"}}]
    tmp = directory / "targets.json.tmp"
    tmp.write_text(json.dumps(payload))
    tmp.replace(directory / "targets.json")
