"""The scoring worker: Faust wiring, consumption, the batch lifecycle, publishing, timers, metrics."""
