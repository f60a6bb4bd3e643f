"""What ships starts: the image's files, installed as the Dockerfile installs them, run as the
Dockerfile, the Kubernetes manifests and docker-compose run them, against the test stack.

No Docker engine is needed. The product stage of `deploy/Dockerfile` is read (so the test and
the image cannot drift): its COPY lines give the files, laid out in a directory outside the
checkout; its RUN line's `pip install` installs them, with the constraints, into a fresh venv;
its ENV, ENTRYPOINT and CMD give the process. Every command a manifest runs with that image
(`args` of a Deployment, `command` of a compose service built from the product stage) is started
from that venv, in a directory outside the checkout, and must answer its probes; the worker
scores an event, `engage api` serves it, and `engage alert-sink` delivers the alert it fired.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from kafka import KafkaProducer

from devstack.processes import free_port
from scoring.timeutil import DAY
from streams.settings import ENV, prefixed_topics
from tests.builders import ev
from tests.streams.support import pipeline_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
pytestmark = [pytest.mark.services, pytest.mark.network]


# --- reading the Dockerfile and the manifests ------------------------------------------------

def product_stage(text: str) -> list[str]:
    """The instructions of the Dockerfile's first stage (the product image), continuations joined."""
    joined = text.replace("\\\n", " ")
    instructions = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    stages = [i for i, line in enumerate(instructions) if line.upper().startswith("FROM ")]
    end = stages[1] if len(stages) > 1 else len(instructions)
    return instructions[stages[0]:end]


def instructions(stage: list[str], name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in stage if line.split(None, 1)[0].upper() == name]


def copies(stage: list[str]) -> list[tuple[str, str]]:
    """(source in the build context, destination under WORKDIR) of every COPY."""
    found = []
    for args in instructions(stage, "COPY"):
        *sources, dest = shlex.split(args)
        assert not any(s.startswith("--") for s in sources), f"COPY flags are not read here: {args}"
        found += [(s, dest.rstrip("/") + "/" + Path(s).name if dest.endswith("/") or len(sources) > 1 else dest)
                  for s in sources]
    return found


def pip_install(stage: list[str]) -> list[str]:
    """The arguments of the product's `pip install`, a command of a RUN line (up to its `&&`)."""
    for run in instructions(stage, "RUN"):
        words = shlex.split(run)
        for start in [i for i in range(len(words) - 1) if words[i:i + 2] == ["pip", "install"]]:
            if start == 0 or words[start - 1] == "&&":
                rest = words[start + 2:]
                return rest[:rest.index("&&")] if "&&" in rest else rest
    raise AssertionError("the product stage has no `RUN pip install ...`")


def image_env(stage: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions(stage, "ENV"):
        env.update(word.split("=", 1) for word in shlex.split(args))
    return env


def exec_form(stage: list[str], name: str) -> list[str]:
    (args,) = instructions(stage, name)
    return json.loads(args)


@dataclass
class Launch:
    """One way a manifest runs the image: its arguments and the paths its probes ask for."""

    source: str
    args: list[str]
    probes: list[str] = field(default_factory=list)


def launches() -> list[Launch]:
    stage = product_stage(DOCKERFILE.read_text())
    found = [Launch("Dockerfile CMD", exec_form(stage, "CMD"), ["/healthz"])]   # its HEALTHCHECK
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    probes = [container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")
                              if p in container]
                    found.append(Launch(f"{path.name}:{container['name']}", container["args"], probes))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        build = service.get("build") or {}
        if build.get("dockerfile") == "deploy/Dockerfile" and build.get("target") == "product":
            test = " ".join(service.get("healthcheck", {}).get("test", []))
            probes = [p for p in ("/readyz", "/healthz") if p in test]
            found.append(Launch(f"docker-compose:{name}", service["command"], probes))
    return found


def test_the_manifests_are_read_whole():
    """Every product process the manifests name is found: a renamed key would make the test vacuous."""
    found = {launch.source: launch.args[0] for launch in launches()}
    assert set(found.values()) == {"worker", "api", "alert-sink"}
    assert {"deployment.yaml:worker", "api.yaml:api", "alert-sink.yaml:alert-sink", "docker-compose:worker",
            "docker-compose:api", "docker-compose:alert-sink", "Dockerfile CMD"} <= set(found)
    stage = product_stage(DOCKERFILE.read_text())
    assert [src for src, _ in copies(stage)] == ["pyproject.toml", "setup.py", "constraints.txt", "README.md", "scoring",
                                                 "streams"]
    assert pip_install(stage) == ["-c", "constraints.txt", "."]
    assert "devstack" not in " ".join(instructions(stage, "COPY"))


# --- the image's files, installed --------------------------------------------------------------

@dataclass
class Shipped:
    app: Path          # the image's WORKDIR, as its COPY lines fill it
    venv: Path
    env: dict[str, str]
    entrypoint: list[str]

    def command(self, args: list[str]) -> list[str]:
        return [str(self.venv / "bin" / self.entrypoint[0]), *self.entrypoint[1:], *args]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Shipped:
    stage = product_stage(DOCKERFILE.read_text())
    base = tmp_path_factory.mktemp("image")
    app = base / "app"
    app.mkdir()
    for source, dest in copies(stage):
        target = app / dest
        origin = ROOT / source
        if origin.is_dir():
            subprocess.run(["cp", "-r", str(origin), str(target)], check=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(origin.read_bytes())
    for left_out in dockerignored(app):      # as the build context leaves them out
        subprocess.run(["rm", "-rf", str(left_out)], check=True)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *pip_install(stage)],
                             cwd=app, capture_output=True, text=True, timeout=900, env=clean_env())
    assert install.returncode == 0, install.stdout + install.stderr
    return Shipped(app, venv, image_env(stage), exec_form(stage, "ENTRYPOINT"))


def dockerignored(app: Path) -> list[Path]:
    """What .dockerignore keeps out of the build context, among the files laid out in `app`
    (the COPY lines keep the context's paths)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return sorted({path for pattern in patterns for path in app.glob(pattern)}, reverse=True)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a process run from the image: nothing of the checkout's or the tests'."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENGAGE_", "PYTHON", "VIRTUAL_ENV")) and k not in ("PWD", "OLDPWD")}
    return {**env, **extra}


def test_the_image_holds_the_product_and_none_of_the_dev_tools(shipped):
    python = str(shipped.venv / "bin" / "python")
    found = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('devstack'))"],
                           cwd=shipped.venv, capture_output=True, text=True, env=clean_env(), check=True)
    assert found.stdout.strip() == "None"
    where = subprocess.run([python, "-c", "import streams; print(streams.__file__)"], cwd=shipped.venv,
                           capture_output=True, text=True, env=clean_env(), check=True)
    assert where.stdout.startswith(str(shipped.venv)) and not where.stdout.startswith(str(ROOT))
    core = subprocess.run([python, "-c", "from scoring import build; print(build.CHOSEN)"], cwd=shipped.venv,
                          capture_output=True, text=True, env=clean_env(), check=True)
    assert core.stdout.strip() == "compiled"     # the install built the per-event rules (setup.py)
    helped = subprocess.run(shipped.command(["--help"]), cwd=shipped.venv, capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert helped.returncode == 0, helped.stderr
    for command in ("worker", "api", "alert-sink", "topics", "replay", "score", "config"):
        assert f"  {command} " in helped.stdout, command
    assert "demo" not in helped.stdout and "generate" not in helped.stdout


# --- every command the manifests run, started from the image's install ----------------------

class Receiver(ThreadingHTTPServer):
    """A local webhook receiver: what the alert sink posts."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.shutdown()


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        return 0, str(err)


def wait_for(what: str, check, processes: list[subprocess.Popen], logs: Path, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited; logs in {logs}:\n" + \
                "\n".join(p.read_text()[-3000:] for p in logs.glob("*.log"))
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; logs in {logs}")


def test_every_command_the_manifests_run_starts_from_the_image_and_answers(shipped, stack, unique, receiver,
                                                                             tmp_path):
    by_command: dict[str, list[Launch]] = {}
    for launch in launches():
        by_command.setdefault(launch.args[0], []).append(launch)
    topics = {ENV[name]: value for name, value in prefixed_topics(f"{unique}.").items()}
    base = clean_env(**{**shipped.env, **topics, "ENGAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
                        "ENGAGE_REDIS_URL": stack.redis_url, "ENGAGE_APP_ID": unique, "ENGAGE_KEY_PREFIX": unique,
                        "ENGAGE_DATA_DIR": str(tmp_path / "data"), "ENGAGE_ALERT_WEBHOOK_URL": receiver.url,
                        "ENGAGE_SWEEP_INTERVAL_S": "3600"})
    pipeline_settings(stack, unique)          # the topics, so that the sink need not wait for the worker's
    ports = {"worker": free_port(), "api": free_port(), "alert-sink": free_port()}
    processes: list[subprocess.Popen] = []
    try:
        for command, port in ports.items():
            (args,) = {tuple(launch.args) for launch in by_command[command]}   # every manifest runs it alike
            env = {**base, "ENGAGE_WEB_PORT": str(port), "ENGAGE_ALERT_SINK_PORT": str(port)}
            log = open(tmp_path / f"{command}.log", "wb")
            processes.append(subprocess.Popen(shipped.command(list(args)), cwd=tmp_path, env=env, stdout=log,
                                              stderr=subprocess.STDOUT))
        for command, port in ports.items():
            for launch in by_command[command]:
                for probe in launch.probes:
                    wait_for(f"{launch.source} {probe}", lambda: get(f"http://127.0.0.1:{port}{probe}")[0] == 200,
                             processes, tmp_path)

        # one event scored by the worker, read back from engage api, its alert delivered by the sink
        joined = ev(f"{unique}-c", "member_joined", int(time.time() * 1000) - 20 * DAY)
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        producer.send(topics["ENGAGE_EVENTS_TOPIC"], json.dumps(joined).encode(), key=joined["customer_id"].encode())
        producer.flush()
        producer.close()
        for command in ("worker", "api"):
            url = f"http://127.0.0.1:{ports[command]}/customers/{joined['customer_id']}"
            status, body = wait_for(f"the customer from {command}", lambda: (lambda r: r if r[0] == 200 else None)(
                get(url)), processes, tmp_path)
            assert body["customer_id"] == joined["customer_id"] and body["member"] is True, body
        delivered = wait_for("the alert at the webhook", lambda: list(receiver.received), processes, tmp_path)
        assert {d["alert"]["customer_id"] for d in delivered} == {joined["customer_id"]}
        assert {d["alert"]["rule"] for d in delivered} <= {"inactive", "not_activated"}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
