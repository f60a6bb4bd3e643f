"""`engage import`: a file of history sent to the events topic as history (docs/import.md).

Each row becomes one event marked `"import": {"id": <the import's id>, "row": <its line>}`, keyed
by its customer like any event, so the workers count it through the same write path, and the
core's rules for history apply (`scoring.history_import`): no lateness gate, only buckets still
within the retention, idempotent by import and row. Rows are validated here first, with the
same rules: a bad one is reported by its line and not sent, and the others are.

Formats:
* `jsonl`: one event per line, in the product's format or as a Segment `track` message;
* `csv`: a header of event fields (`event_id`, `customer_id`, `type`, `ts`, and any of `count`,
  `value`, `account_id`, `segment`, `channel`, ...), one event per line;
* `daily`: per-customer daily counts, a header of `customer_id`, `date` (YYYY-MM-DD), `type`,
  `count` and optionally `value`: each row one event of `count` at the day's start (UTC), its id
  `<import id>:<line>`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson
from kafka import KafkaProducer

from scoring.config import Config
from scoring.events import validate_event
from scoring.reasons import EventRejected
from streams.security import kafka_options
from streams.settings import Settings

FORMATS = ("jsonl", "csv", "daily")
INTEGER_FIELDS = ("count",)
NUMBER_FIELDS = ("value",)
BOOLEAN_FIELDS = ("first_contact",)


@dataclass
class ImportReport:
    sent: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)    # (line, why)


def rows(lines: Iterable[str], fmt: str, import_id: str) -> Iterator[tuple[int, object]]:
    """(line number, the row as a JSON value) of every non-blank line; a row that cannot be read is
    its error message instead (a str)."""
    if fmt == "jsonl":
        for line_no, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield line_no, orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield line_no, f"malformed_json: {exc}"
        return
    reader = csv.DictReader(lines)
    for record in reader:
        line_no = reader.line_num
        row = {k: v for k, v in record.items() if k is not None and v not in (None, "")}
        try:
            yield line_no, _daily(row, import_id, line_no) if fmt == "daily" else _typed(row)
        except ValueError as exc:
            yield line_no, f"invalid_field: {exc}"


def _typed(row: dict[str, str]) -> dict[str, object]:
    """A CSV row's cells as the JSON types of their fields."""
    out: dict[str, object] = dict(row)
    for name in INTEGER_FIELDS:
        if name in row:
            out[name] = int(row[name])
    for name in NUMBER_FIELDS:
        if name in row:
            out[name] = float(row[name])
    for name in BOOLEAN_FIELDS:
        if name in row:
            if row[name].lower() not in ("true", "false"):
                raise ValueError(f"{name} must be true or false")
            out[name] = row[name].lower() == "true"
    if "ts" in row and row["ts"].isdigit():
        out["ts"] = int(row["ts"])
    return out


def _daily(row: dict[str, str], import_id: str, line_no: int) -> dict[str, object]:
    missing = [name for name in ("customer_id", "date", "type", "count") if name not in row]
    if missing:
        raise ValueError(f"a daily row needs {', '.join(missing)}")
    event = _typed({k: v for k, v in row.items() if k != "date"})
    return {**event, "event_id": f"{import_id}:{line_no}", "ts": f"{row['date']}T00:00:00Z"}


def prepare(rows_in: Iterable[tuple[int, object]], import_id: str, config: Config,
            report: ImportReport) -> Iterator[tuple[str, bytes]]:
    """(customer id, the event as history) of each valid row; the invalid ones go to the report, and
    so does a repeat of an event id earlier in the file (a row is counted once per import and row,
    so a file's own duplicates are dropped here)."""
    first_line: dict[tuple[str, str], int] = {}
    for line_no, row in rows_in:
        if isinstance(row, str):
            report.invalid.append((line_no, row))
            continue
        try:
            event = validate_event(row, config)          # the product's format or a Segment track message
            history = validate_event({**event.to_dict(), "import": {"id": import_id, "row": line_no}}, config)
        except EventRejected as rejected:
            where = f" ({rejected.field})" if rejected.field else ""
            report.invalid.append((line_no, f"{rejected.reason.value}{where}: {rejected.detail}"))
            continue
        seen_at = first_line.setdefault((history.customer_id, history.event_id), line_no)
        if seen_at != line_no:
            report.invalid.append((line_no, f"duplicate: event {history.event_id!r} is on line {seen_at} too"))
            continue
        yield history.customer_id, orjson.dumps(history.to_dict())


def check_import(config: Config, lines: Iterable[str], fmt: str, import_id: str) -> ImportReport:
    """What `run_import` would send and leave out, with nothing sent (no broker needed)."""
    report = ImportReport()
    report.sent = sum(1 for _ in prepare(rows(lines, fmt, import_id), import_id, config, report))
    return report


def run_import(settings: Settings, config: Config, lines: Iterable[str], fmt: str, import_id: str) -> ImportReport:
    """Send the valid rows to the events topic (acknowledged by every in-sync replica)."""
    report = ImportReport()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5, client_id="engage-import", **kafka_options(settings))
    try:
        for customer_id, value in prepare(rows(lines, fmt, import_id), import_id, config, report):
            producer.send(settings.events_topic, key=customer_id.encode(), value=value)
            report.sent += 1
        producer.flush()
    finally:
        producer.close()
    return report
