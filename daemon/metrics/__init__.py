"""Counters and time series every part of the daemon records into, and the [metrics] config section."""
