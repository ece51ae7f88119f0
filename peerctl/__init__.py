"""peerctl: the Python client of a local duckpeerd, and the CLI built on it.

    from peerctl import Client
    with Client() as client:
        rid = client.store_performance_result(model_name="bert-base-uncased",
                                              hardware_type="cuda", throughput=812.5,
                                              latency=9.8)

Importing this package pulls in msgpack and the control codec only (no libp2p, no
duckdb), so scripts and the CLI start fast.
"""

from peerctl.client import Client, ClientError, DaemonUnavailable, RequestFailed

__all__ = ["Client", "ClientError", "DaemonUnavailable", "RequestFailed"]
