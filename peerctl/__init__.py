"""peerctl: the Python client of a local duckpeerd, and the CLI built on it.

    from peerctl import Client
    with Client() as client:
        rid = client.store_performance_result(model_name="bert-base-uncased",
                                              hardware_type="cuda", throughput=812.5,
                                              latency=9.8)

    from peerctl import benchmark
    with benchmark("bert-base-uncased", batch_size=8, precision="fp16"):
        model(batch)  # timed, the hardware read, the result recorded (see recorder.py)

Importing this package pulls in msgpack and the control codec only (no libp2p, no
duckdb), so scripts and the CLI start fast.
"""

from peerctl.client import Client, ClientError, DaemonUnavailable, RequestFailed
from peerctl.recorder import benchmark, flush_pending

__all__ = ["Client", "ClientError", "DaemonUnavailable", "RequestFailed", "benchmark",
           "flush_pending"]  # fmt: skip
