"""Sans-IO core of duckpeer: wire messages, clocks, version vectors, changesets, CIDs.

Nothing in this package performs I/O or imports trio, libp2p or duckdb. Submodules are
imported explicitly (``from protocol import messages``) so that light consumers such as
``peerctl`` only pay for what they use.
"""
