"""The edge: it executes what the scoring core decides, and holds no rule.

Rooms, doors one way (`tests/test_purity.py` holds them):

* `streams.worker`: the Faust worker: consumption, the batch lifecycle, publishing, timers;
* `streams.serve`: the HTTP answers (API, OpenAPI, page, health) and their adapters;
* `streams.sink`: the alert sink (alerts topic to a webhook);
* `streams.state`: Redis: the store, key layout, Lua scripts, outbox, the shared KPIs;
* the floor under them: `settings`, `security`, `codec`, `clock`;
* `streams.processes` assembles each process from the rooms, and `streams.cli` parses flags.

Worker, serve and sink depend on state, the floor and the core, never on each other.
"""
