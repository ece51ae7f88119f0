"""What the daemon records about itself, read by the monitor and ``status``.

- ``counters``: :class:`Metrics`, monotonic counters and timed observations.
- ``timeseries``: ring buffers of samples, window summaries, trends.
- ``config``: the ``[metrics]`` section and ``[[alerts]]`` rules of the config file.
"""
