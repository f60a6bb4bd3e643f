"""`GET /openapi.json`: the OpenAPI 3.1 description of every HTTP route, for generated clients.

One document for a worker and `engage api` (they serve the same routes). The response
schemas are closed (`additionalProperties: false`) where the body is ours field by field,
and the suite checks real responses against them (tests/streams/test_pipeline.py), so a
field added to a response without its schema fails a test instead of surprising a client.
The KPI object's schema is read off :class:`scoring.business.BusinessKpis`, its one home.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from importlib import metadata
from typing import Any

from scoring.account_alerts import AccountRule
from scoring.alerts import Rule
from scoring.business import BusinessKpis
from scoring.formulas import Tier
from scoring.measures import KINDS
from streams.serve.api import MAX_BATCH_IDS, MAX_LIMIT

TITLE = "Engagement scorer API"


def _version() -> str:
    """The installed package's version (what a generated client pins against)."""
    try:
        return metadata.version("engagement-scorer")
    except metadata.PackageNotFoundError:     # run from a checkout that was never installed
        return "0.0.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """A closed object schema: these properties and no others."""
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required),
            "additionalProperties": False}


INT, NUM, STR, BOOL = {"type": "integer"}, {"type": "number"}, {"type": "string"}, {"type": "boolean"}
MS = {"type": "integer", "description": "epoch milliseconds"}
OPT_MS = {"type": ["integer", "null"], "description": "epoch milliseconds"}
OPT_STR = {"type": ["string", "null"]}
TIER = {"type": "string", "enum": [t.value for t in Tier]}

_PYTHON_TYPES = {int: INT, float: NUM, str: STR, bool: BOOL}


def _schema_of(annotation: Any) -> dict[str, Any]:
    """JSON Schema of a BusinessKpis field's type (numbers, strings, str-keyed mappings of them)."""
    if annotation in _PYTHON_TYPES:
        return _PYTHON_TYPES[annotation]
    if typing.get_origin(annotation) is dict:
        _, value = typing.get_args(annotation)
        return {"type": "object", "additionalProperties": _schema_of(value)}
    raise TypeError(f"no JSON schema for {annotation!r}")


def _segment(description: str) -> dict[str, Any]:
    """The `segment` query parameter: one of the segments kept apart (a bounded set)."""
    return {"name": "segment", "in": "query", "required": False, "schema": STR,
            "description": f"{description} (a segment with a scorecard or listed in kpis.segments; others: 400)"}


def _kpis_schema() -> dict[str, Any]:
    hints = typing.get_type_hints(BusinessKpis)
    return _obj({f.name: _schema_of(hints[f.name]) for f in dataclasses.fields(BusinessKpis)},
                {"segment": {**STR, "description": "the segment asked for: the KPIs of the customers in it now"}})


_TYPE_SCORE = _obj({"type": STR, "count": INT, "weight": NUM, "cer": NUM, "component": NUM, "es": NUM})
_MEASURE_SCORE = _obj({
    "name": STR, "kind": {"type": "string", "enum": list(KINDS)}, "type": STR,
    "reading": {"type": ["number", "null"], "description": "the penalty's count, or the average's mean value "
                                                            "(null: no event carried one in the window)"},
    "weight": INT, "score": {"type": ["number", "null"], "description": "0-100; null: left out of the mean"},
    "es": NUM})
_MEASURES = {"type": "array", "items": _ref("MeasureScore")}
_TRAITS = {"type": "object", "additionalProperties": {"type": ["number", "string"]},
           "description": "the customer's allowed traits (a date as RFC 3339)"}
_STANDING = {"customer_id": STR, "account_id": OPT_STR, "es": NUM, "tier": TIER, "cer": NUM, "active": BOOL}
_ACCOUNT = {"account_id": STR, "as_of": MS, "users": INT, "active_users": INT, "cer": NUM, "es": NUM,
            "tier": TIER, "below_benchmark": BOOL,
            "tiers": {"type": "object", "additionalProperties": INT}}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR, "status": INT}),
    "TypeScore": _TYPE_SCORE,
    "MeasureScore": _MEASURE_SCORE,
    "ScoreCard": _obj({
        "customer_id": STR, "as_of": MS, "cer": NUM, "es": NUM, "tier": TIER, "below_benchmark": BOOL,
        "decayed": {"type": ["number", "null"]}, "active": BOOL, "member": BOOL, "last_event": OPT_MS,
        "last_active": OPT_MS, "account_id": OPT_STR, "segment": OPT_STR,
        "breakdown": {"type": "array", "items": _ref("TypeScore")}, "measures": _MEASURES,
        "traits": _TRAITS,
        "alerts_active": {"type": "array", "items": {"type": "string", "enum": [r.value for r in Rule]}},
        "why": _ref("Explanation"),
    }),
    "Driver": _obj({"type": {"type": "string", "description": "the event type, or the measure's name"},
                    "before": {"type": ["number", "null"]}, "now": {"type": ["number", "null"]},
                    "change_percent": {"type": ["number", "null"]}, "es_points_before": NUM, "es_points_now": NUM},
                   {"measure": {"type": "string", "enum": list(KINDS), "description": "a measure's kind"}}),
    "Explanation": _obj({
        "sentence": {"type": "string", "description": "one human sentence: ES and tier then and now, and why"},
        "since": MS, "es_before": NUM, "tier_before": TIER, "es_now": NUM, "tier_now": TIER,
        "drivers": {"type": "array", "items": _ref("Driver"), "maxItems": 3},
        "quiet_days": {"type": ["integer", "null"]}, "nps": {"type": ["number", "null"]},
        "csat": {"type": ["number", "null"]}}),
    "AccountCard": _obj({**_ACCOUNT, "breakdown": {"type": "array", "items": _ref("TypeScore")},
                         "measures": _MEASURES,
                         "traits": {**_TRAITS, "description": "the account's traits: per allowed trait, what the "
                                                              "newest event setting it on any of its users said"}}),
    "AccountSummary": _obj(_ACCOUNT),
    "Standing": _obj(_STANDING),
    "StandingWithAlerts": _obj({**_STANDING, "alerts": {"type": "array", "items": STR}, "traits": _TRAITS}),
    "Alert": _obj({"id": {"type": "string", "description": "stable: the same alert redelivered has the same id"},
                   "rule": {"type": "string", "enum": [r.value for r in Rule]}, "customer_id": STR,
                   "account_id": OPT_STR, "as_of": MS, "before": {"type": "object"}, "after": {"type": "object"},
                   "breakdown": {"type": "array", "items": _ref("TypeScore")}, "measures": _MEASURES,
                   "traits": _TRAITS, "why": _ref("Explanation")}),
    "Kpis": None,      # filled from BusinessKpis by document()
    "HistoryPoint": _obj({"at": MS, "es": NUM, "cer": NUM, "tier": TIER}),
    "CustomerHistory": _obj({"customer_id": STR, "as_of": MS, "points": {"type": "array", "items": _ref("HistoryPoint")},
                             "change": _ref("Trend")}),
    "AccountHistory": _obj({"account_id": STR, "users": INT, "as_of": MS,
                            "points": {"type": "array", "items": _ref("HistoryPoint")}, "change": _ref("Trend")}),
    "Trend": _obj({"7d": {"type": ["number", "null"]}, "30d": {"type": ["number", "null"]}}),
    "TrendPoint": _obj({"bucket": INT, "as_of_ms": MS, "aer": NUM, "members": INT, "active_members": INT,
                        "dau": INT, "wau": INT, "mau": INT, "stickiness": NUM, "nps": NUM, "nps_responses": INT,
                        "csat": NUM, "mean_es": NUM, "tier_counts": {"type": "object", "additionalProperties": INT}}),
    "KpiTrend": _obj({"as_of": MS, "bucket_ms": INT, "points": {"type": "array", "items": _ref("TrendPoint")}},
                     {"segment": STR}),
    "Ids": _obj({"ids": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_IDS,
                         "items": {"type": ["string", "integer"]},
                         "description": "customer (or account) ids; integers are read as decimal strings"}}),
    "CustomersBatch": _obj({"as_of": MS, "customers": {"type": "array", "items": _ref("StandingWithAlerts")},
                            "unknown": {"type": "array", "items": STR}}),
    "AccountsBatch": _obj({"as_of": MS, "accounts": {"type": "array", "items": _ref("AccountSummary")},
                           "unknown": {"type": "array", "items": STR}}),
    "Leaderboard": _obj({"as_of": MS, "order": {"type": "string", "enum": ["top", "bottom"]},
                         "customers": {"type": "array", "items": _ref("Standing")}}, {"segment": STR}),
    "Work": _obj({"state": {"type": "string", "enum": ["acknowledged", "snoozed"]}, "by": STR, "note": STR,
                  "at": MS, "until": OPT_MS}),
    "WorkedAlert": _obj({
        "id": STR, "state": {"type": "string", "enum": ["open", "acknowledged", "snoozed", "resolved"]},
        "rule": STR, "customer_id": STR, "account_id": OPT_STR, "owner": OPT_STR, "segment": OPT_STR,
        "recorded": MS, "resolved": OPT_MS, "work": {"oneOf": [{"type": "null"}, _ref("Work")]},
        "alert": {"type": "object", "description": "the alert as published (GET /alerts/recent)"}}),
    "Alerts": _obj({"as_of": MS, "alerts": {"type": "array", "items": _ref("WorkedAlert")},
                    "more": {"type": "boolean", "description": "more alerts match: ask with a higher limit (or a "
                                                             "narrower filter: a search stops after 20,000 alerts)"}}),
    "AtRisk": _obj({"as_of": MS, "customers": {"type": "array", "items": _ref("StandingWithAlerts")},
                    "total": INT}),
    "AccountAlert": _obj({
        "id": STR, "rule": {"type": "string", "enum": [r.value for r in AccountRule]}, "account_id": STR,
        "customer_id": {"type": "null"}, "as_of": MS, "users": INT, "before": {"type": "object"},
        "after": {"type": "object"},
        "why": _obj({"sentence": STR, "drivers": {"type": "array", "items": _obj(
            {"customer_id": STR, "es_before": {"type": ["number", "null"]}, "es_now": {"type": ["number", "null"]}})}})}),
    "RecentAlerts": _obj({"alerts": {"type": "array", "items": {"anyOf": [_ref("Alert"), _ref("AccountAlert")]}}}),
    "Health": {"type": "object", "properties": {"status": STR}, "required": ["status"]},
    "Ready": _obj({"ready": BOOL, "detail": STR}),
}

_AS_OF = {"name": "as_of", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0},
          "description": "epoch milliseconds; default now"}
_LIVE_AS_OF = {**_AS_OF, "description": "epoch milliseconds within the current bucket; default now "
                                        "(these reads are kept current, not recomputed)"}


def _limit(default: int) -> dict[str, Any]:
    return {"name": "limit", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default}}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {400: "a bad parameter or body", 401: "a bearer token is required (ENGAGE_API_TOKEN)",
               403: "alert writes are off: no ENGAGE_API_WRITE_TOKEN is set", 404: "unknown id",
               409: "the alert is resolved: its condition has ended"}
    return {str(code): _json("Error", meaning[code]) for code in codes}


def _read(summary: str, schema: str, parameters: list[dict[str, Any]], *errors: int) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters,
                    "responses": {"200": _json(schema, summary), **_errors(401, *errors)}}}


def _batch(summary: str, schema: str) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": [_LIVE_AS_OF],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Ids")}}},
                     "responses": {"200": _json(schema, summary), **_errors(400, 401)}}}


def _act(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    """A write route: the write token (ENGAGE_API_WRITE_TOKEN), a JSON body, the alert as listed after."""
    return {"post": {"summary": summary, "security": [{"write": []}], "parameters": [_path_id("alert_id")],
                     "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                     "responses": {"200": _json("WorkedAlert", "the alert as GET /alerts lists it now"),
                                   "401": {**_json("Error", "the write token is required (ENGAGE_API_WRITE_TOKEN)")},
                                   **_errors(400, 403, 404, 409)}}}


_BY = {"by": {"type": "string", "minLength": 1, "maxLength": 100, "description": "who acts"},
       "note": {"type": "string", "maxLength": 1000}}


PATHS: dict[str, Any] = {
    "/alerts": _read("Customer alerts as a team works them, newest first", "Alerts",
                     [*({"name": name, "in": "query", "required": False, "schema": STR, "description": text}
                        for name, text in (("state", "open, acknowledged, snoozed or resolved"),
                                           ("rule", "tier_downgrade, score_drop, inactive or not_activated"),
                                           ("owner", "the customer's owner trait when the alert was raised"),
                                           ("segment", "the customer's segment when the alert was raised"))),
                      _limit(50)], 400),
    "/alerts/{alert_id}/acknowledge": _act("Acknowledge the alert's condition: its later alerts are recorded, "
                                           "not sent, until the condition ends", _obj({"by": _BY["by"]},
                                                                                     {"note": _BY["note"]})),
    "/alerts/{alert_id}/snooze": _act("Snooze the alert's condition until an instant: its alerts are not sent "
                                      "until then", _obj({"by": _BY["by"], "until": {
                                          "type": ["integer", "string"],
                                          "description": "epoch milliseconds or RFC 3339, in the future"}},
                                          {"note": _BY["note"]})),
    "/customers/{customer_id}": _read("A customer's score card, computed by the core at `as_of`", "ScoreCard",
                                      [_path_id("customer_id"), _AS_OF], 400, 404),
    "/accounts/{account_id}": _read("An account's roll-up of its users' score cards at `as_of`", "AccountCard",
                                    [_path_id("account_id"), _AS_OF], 400, 404),
    "/customers/{customer_id}/history": _read("ES, CER and tier at the end of each bucket over history.horizon, "
                                              "and the change over 7 and 30 days", "CustomerHistory",
                                              [_path_id("customer_id"), _AS_OF], 400, 404),
    "/accounts/{account_id}/history": _read("The account's users' histories rolled up per point (ES mean, CER "
                                            "sum)", "AccountHistory", [_path_id("account_id"), _AS_OF], 400, 404),
    "/customers.csv": {"get": {
        "summary": "Every stored standing with its traits as CSV, lowest ES first, streamed (spreadsheets, "
                   "warehouse loads)",
        "parameters": [_segment("only this segment's customers"),
                       {"name": "tier", "in": "query", "required": False, "schema": TIER},
                       {"name": "below_benchmark", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                        "description": "only those whose CER is (or is not) below scoring.benchmark_cer"}],
        "responses": {"200": {"description": "CSV with a header row: customer_id, account_id, segment, es, cer, "
                                             "tier, active, alerts (';' between rules), then traits.<name> per "
                                             "allowed trait",
                              "content": {"text/csv": {"schema": STR}}},
                      **_errors(400, 401)}}},
    "/customers:batch": _batch(f"Up to {MAX_BATCH_IDS} customers' current standings; unknown ids listed",
                               "CustomersBatch"),
    "/accounts:batch": _batch(f"Up to {MAX_BATCH_IDS} accounts' current roll-ups (no breakdown); unknown ids "
                              "listed", "AccountsBatch"),
    "/leaderboard": _read("Customers by ES (ties: CER, then id)", "Leaderboard",
                          [{"name": "order", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["top", "bottom"], "default": "top"}},
                           _segment("only this segment's customers"), _limit(10), _LIVE_AS_OF], 400),
    "/at-risk": _read("Customers with an alert condition active, lowest ES first", "AtRisk",
                      [_limit(50), _LIVE_AS_OF], 400),
    "/kpis": _read("Every business KPI", "Kpis", [_segment("the KPIs of the customers in this segment now"),
                                                  _LIVE_AS_OF], 400),
    "/kpis/trend": _read("The headline KPIs per bucket over kpis.window, each bucket's as last computed in it by "
                         "a worker", "KpiTrend", [_segment("this segment's trend"), _LIVE_AS_OF], 400),
    "/alerts/recent": _read("The newest alerts, newest first", "RecentAlerts", [_limit(20)], 400),
    "/healthz": {"get": {"summary": "The process is up", "security": [],
                         "responses": {"200": _json("Health", "up")}}},
    "/readyz": {"get": {"summary": "Ready to serve: Redis answers (a worker: and its batches apply)",
                        "security": [], "responses": {"200": _json("Ready", "ready"),
                                                      "503": _json("Ready", "not ready, and why")}}},
    "/metrics": {"get": {"summary": "Prometheus exposition (a worker; guarded when ENGAGE_METRICS_AUTH=true)",
                         "security": [], "responses": {"200": {"description": "text exposition format",
                                                               "content": {"text/plain": {"schema": STR}}}}}},
    "/openapi.json": {"get": {"summary": "This document", "security": [],
                              "responses": {"200": {"description": "OpenAPI 3.1",
                                                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/": {"get": {"summary": "The live page", "security": [],
                  "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": STR}}}}}},
}


@cache
def document() -> dict[str, Any]:
    """The whole OpenAPI document (built once: it depends only on the code)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": _version(),
                 "description": "Live per-customer engagement scores, leaderboards, alerts and business KPIs. "
                                "Errors are JSON `{error, status}`."},
        "paths": PATHS,
        "components": {"schemas": {**SCHEMAS, "Kpis": _kpis_schema()},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "ENGAGE_API_TOKEN, when one is set"},
                                           "write": {"type": "http", "scheme": "bearer",
                                                     "description": "ENGAGE_API_WRITE_TOKEN: the routes that write"}}},
        "security": [{"bearer": []}],
    }
