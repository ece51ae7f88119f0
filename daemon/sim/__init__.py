"""The cluster simulator: hundreds to thousands of peers in one process, in virtual time.

Each simulated peer runs the daemon's own gossip, announce, sync, membership and
connection-manager services (``daemon/net``), unchanged, over the in-memory transport
(:mod:`daemon.net.memnet`) under ``trio.testing.MockClock``. What is not the daemon's:

- ``store``: a small in-memory changeset store (chains of real, signed changeset
  blocks, the real database CID; no rows, no DuckDB) with a fixed apply cost;
- ``cluster``: starting, stopping, partitioning and writing to peers;
- ``scenarios``: the measurements (convergence after a write, steady traffic,
  partition heal, churn) that ``bench/bench_sim.py`` and the tests run.
"""
