"""The performance monitor.

- ``service``: :class:`Monitor`, sampling the daemon's own figures into time series.
- ``alerts``: rules firing and clearing; ``health``: healthy, degraded or unhealthy.
- ``prometheus``: ``GET /metrics``; ``history``: optional persistence of the series.
- ``verify``: cross-peer convergence check.
- ``methods``: ``metrics``, ``alerts``, ``health``, ``top``, ``verify``, ``report``.
"""
