"""The local development stack (Kafka, Redis, Redis Cluster, Prometheus): see `devstack.stack`."""
