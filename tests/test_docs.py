"""The docs (README.md and docs/*.md) document every config key, rejection reason, KPI
function, metric and setting, every link between them leads somewhere, and they (with
deploy/README.md) speak only of the product: no development sources a user cannot look up."""

from __future__ import annotations

import inspect
import pathlib
import re

import pytest

from scoring import formulas
from scoring.config import default_mapping
from scoring.reasons import Reason

ROOT = pathlib.Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIRST = PAGES[0].read_text()
README = "\n".join(page.read_text() for page in PAGES)    # the whole documentation, README first


def anchors(page: pathlib.Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_link_between_the_docs_leads_to_a_file_and_a_heading_that_exist():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []
    assert len(PAGES) > 10


def test_the_readme_is_a_front_page_not_the_reference():
    """What the product is, the two commands, how it works and a map of the docs: the rest is in docs/."""
    assert len(FIRST.splitlines()) < 150
    mapped = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", FIRST))
    assert mapped == {page.name for page in PAGES[1:]}


def dotted_keys(table, prefix=""):
    for key, value in table.items():
        if prefix in ("weights.", "targets.", "traits.") or prefix.startswith(("aer.reference_lines", "mapping.")):
            continue
        if isinstance(value, dict) and key != "reference_lines":
            yield from dotted_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_readme_starts_with_the_two_commands():
    first_block = FIRST.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["./engage demo", "./scripts/test"]
    ci = (pathlib.Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "exec ./scripts/test" in ci


def test_every_config_key_is_in_the_configuration_table():
    keys = list(dotted_keys(default_mapping()))
    assert len(keys) > 30
    missing = [k for k in keys if f"`{k}`" not in README]
    assert missing == []


def test_bring_your_own_events_shows_every_type_in_both_formats_read_as_the_same_event_and_the_shipped_names():
    import orjson

    from scoring.catalogue import BUILTIN_TYPES
    from scoring.config import load_config
    from scoring.events import validate_event

    page = (ROOT / "docs" / "bring-your-own-events.md").read_text()
    own_block, segment_block = re.findall(r"```json\n(.*?)```", page, flags=re.S)
    own = [orjson.loads(line) for line in own_block.splitlines()]
    segment = [orjson.loads(line) for line in segment_block.splitlines()]
    config = load_config()
    assert [event["type"] for event in own] == list(BUILTIN_TYPES)
    for mine, theirs in zip(own, segment, strict=True):
        call = "group" if mine["type"] == "traits" else "track"        # traits: an identify or group call
        assert theirs["type"] == call and validate_event(theirs, config) == validate_event(mine, config)
    shipped = page.split("| track event | type |", 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \| `([a-z_]+)` \|", shipped, flags=re.M))
    assert rows == {name: entry.type for name, entry in config.mapping.items()}


def test_every_rejection_reason_is_documented():
    assert [r.value for r in Reason if f"| `{r.value}` |" not in README] == []


def test_every_public_kpi_function_is_named_in_the_readme():
    names = [n for n, f in inspect.getmembers(formulas, inspect.isroutine)
             if f.__module__ == formulas.__name__ and not n.startswith("_")]
    assert len(names) > 25
    missing = [n for n in names if n not in README]
    assert missing == []


def test_every_metric_is_in_the_metrics_table():
    from prometheus_client import CollectorRegistry

    from streams.sink.metrics import SinkMetrics
    from streams.worker.metrics import KPI_FAMILIES, KPI_GAUGES, PREFIX, Metrics

    metrics = Metrics({"saas": 25.0}, CollectorRegistry())
    names = {m.name for m in metrics.registry.collect() if m.name.startswith(PREFIX)}
    names |= {m.name for m in SinkMetrics().registry.collect()}
    names |= {PREFIX + g.name for g in KPI_GAUGES}
    names |= {PREFIX + f.name for f in KPI_FAMILIES}
    names |= {PREFIX + n for n in ("kpi_as_of_timestamp_seconds", "aer_band", "aer_reference_percent")}
    assert len(names) > 50
    missing = sorted(n for n in names if f"`{n}`" not in README and f"`{n}_total`" not in README)
    assert missing == []


def test_every_runtime_setting_is_documented():
    from streams.settings import ENV

    assert [v for v in ENV.values() if v not in README] == []


def test_the_metric_catalogue_table_names_all_37_metrics_and_only_real_kpi_fields():
    from dataclasses import fields

    from scoring.business import BusinessKpis

    page = (ROOT / "docs" / "scores-and-kpis.md").read_text()
    table = page.split("### The 37-metric catalogue", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [int(line.split("|")[1]) for line in rows] == list(range(1, 38))
    named = {name for line in rows for name in re.findall(r"`(\w+)`", line.split("|")[3])}
    assert named and named <= {f.name for f in fields(BusinessKpis)}


# What a user of the product cannot look up: a specification document, the seed documents,
# an issue tracker, the repository's commits. The docs name the thing itself instead (the
# rule, the table, the run's date).
SOURCE_REFERENCES = (
    ("SPEC", re.compile(r"\bSPEC\b")),
    ("section sign", re.compile("§")),
    ("seed", re.compile(r"\bseeds?[ _-]?0\d", re.IGNORECASE)),
    ("issue number", re.compile(r"\bissues? #?\d", re.IGNORECASE)),
    # 7 to 40 lowercase hex characters with a digit and a letter, as a whole word
    ("commit hash", re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")),
    # a hash of digits only ("commit 9419473") looks like a number: caught where it is called a
    # commit (so a 7-40 digit number right after the word "commit" is taken for a hash)
    ("commit", re.compile(r"\bcommits?:? `?[0-9a-f]{7,40}\b", re.IGNORECASE)),
)
# The product's own hex words: a config fingerprint (16 characters) and an output id (24)
PRODUCT_HEX_LENGTHS = {16, 24}
USER_PAGES = [*PAGES, ROOT / "deploy" / "README.md"]


def source_references(text: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in SOURCE_REFERENCES:
            for match in pattern.finditer(line):
                if what == "commit hash" and len(match.group()) in PRODUCT_HEX_LENGTHS:
                    continue
                found.append(f"line {number}: {what}: {match.group()!r}")
    return found


@pytest.mark.parametrize("text", [
    "see SPEC §3", "(SPEC section 5)", "commit 9419473", "at `a043f99`", "seed 002's 37 metrics",
    "Seed 001", "seeds 002, 003", "issue 12", "until issue 15", "Issue #14",
    "cb2e33b", "9419473deadbeef0123456789abcdef01234567", "Commit `1234567`", "commits 7654321 and 1234567",
])
def test_a_source_reference_is_caught(text):
    assert source_references(text) != []


@pytest.mark.parametrize("text", [
    "1764590400000", "deadbeef", "facade accede", "0x1f2e3d4c", "crc32(customer_id) % 16", "sha256",
    "`--seed N`", "TrafficSettings(seed=7)", "2026-12-01 17:14Z", "ENGAGE_FUZZ_INPUTS=2000000", "1e12",
    "run `soakde0ac15b`", "the 37-metric catalogue (#27)", "reissue 3 times", "commit after delivery",
    "`limits.max_message_bytes` | `1048576`",
    '"id": "5d41402abc4b2a76b9719d91"', "config fingerprint 5d41402abc4b2a76",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
])
def test_a_product_word_is_not_a_source_reference(text):
    assert source_references(text) == []


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_docs_cite_no_spec_seed_issue_or_commit(page):
    assert source_references(page.read_text()) == []
