"""Distributed queries.

- ``plan``: splitting a query into a map fragment and a reduce; partitions.
- ``coordinator``: sending fragments, collecting partials, reassigning, reducing.
- ``worker``: running a peer's fragment; ``reduce``: partials as Arrow, the reduce.
- ``service``: fragments from gossip, partials on ``/duckpeer/query/1``.
- ``methods``: ``query_distributed``, ``mapreduce``, ``cluster_status``.
"""
