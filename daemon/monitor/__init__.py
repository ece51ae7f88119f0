"""The performance monitor: sampling, alerts, health, Prometheus, history, verify."""
