"""Observability: Prometheus metrics, structured JSON logs with a request id, phase timings of a turn."""
