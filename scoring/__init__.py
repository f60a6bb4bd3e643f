"""The pure scoring core: events, config, windows, state, scores, KPIs and alert rules.

Standard library plus orjson only; no Kafka, Redis, Faust or Prometheus. Time is
always passed in (epoch milliseconds), never read from a clock. The per-event rules run
compiled when their build is there and current, else interpreted (scoring.build chooses, first).
"""

from scoring import build  # noqa: F401  (first: it chooses the build the imports below load)

from scoring.config import Config, ConfigError, load_config
from scoring.engine import Outcome, Result, Scorer
from scoring.events import Event, decode_event, validate_event
from scoring.reasons import EventRejected, Reason

__all__ = [
    "Config", "ConfigError", "Event", "EventRejected", "Outcome", "Reason", "Result", "Scorer",
    "decode_event", "load_config", "validate_event",
]
