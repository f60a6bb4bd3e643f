"""The edge: Kafka in (a Faust worker), state in Redis, outputs to Kafka, the HTTP API and
metrics, and the engage CLI. It executes what the scoring core decides, and holds no rule."""
