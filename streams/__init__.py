"""The edge: CLI, and (from the live-pipeline issue on) the Faust app, Redis state, metrics and API."""
