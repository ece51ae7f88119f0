"""The local web dashboard (``[web] listen``): peers and convergence, recent results
live, throughput and latency over time with regressions marked, the knowledge graph's
similar configurations and compatibility map, open conflicts.

- ``service``: starts the server when configured; ``server``: the routes (Starlette on
  Hypercorn, trio); ``api``: the data, from the daemon's read methods; ``static/``: the
  page, with uPlot (from npm) for the charts.
"""
