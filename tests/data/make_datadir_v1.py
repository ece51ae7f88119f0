"""How tests/data/datadir_v1.tar.gz was made: run once against commit 3486711 (block format
1), from a checkout of that commit. Kept as a record; the tests never run it.

    python tests/data/make_datadir_v1.py OUT_DIR && tar czf datadir_v1.tar.gz -C OUT_DIR .
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from daemon.localcluster import LocalCluster


def main(out: Path) -> None:
    base = Path(tempfile.mkdtemp(prefix="dpfx-"))
    csv = base / "r.csv"
    lines = [
        "model_name,hardware_type,device_name,batch_size,precision,throughput,latency,memory_mb"
    ]
    lines += [f"model-{i % 7},cuda,A{i % 3},{1 << (i % 5)},fp16,{100 + i * 0.5},{1 + i * 0.01},"
              f"{1000 + i}" for i in range(300)]  # fmt: skip
    csv.write_text("\n".join(lines) + "\n")
    with LocalCluster(2, base_dir=base / "c", keep=True) as cluster:
        a, b = cluster.peers
        ca, cb = a.client(), b.client()
        rid = ca.store_performance_result(
            model_name="bert-base-uncased", hardware_type="cuda", device_name="A100",
            throughput=812.5, latency=9.8, batch_size=8, precision="fp16", memory_mb=2100.0,
        )  # fmt: skip
        cb.store_performance_result(model_name="gpt2", hardware_type="cpu", throughput=50.0,
                                    latency=20.0)  # fmt: skip
        peerctl = [sys.executable, "-m", "peerctl", "--socket", str(a.socket)]
        subprocess.run([*peerctl, "ingest", str(csv)], check=True)
        cluster.wait_converged(30)
        ca.update("models", "bert-base-uncased", {"modality": "text", "parameters_million": 110.0})
        ca.delete("performance_results", rid)
        cb.update("hardware_platforms", "cpu", {"platform": "linux"})
        cluster.wait_converged(30)
        status = a.status()
        digest = ca.query(
            "SELECT model_id, count(*), round(sum(throughput_items_per_second), 3) "
            "FROM performance_results GROUP BY 1 ORDER BY 1"
        )["rows"]
        models = ca.query("SELECT * FROM models ORDER BY model_id")
        ca.close()
        cb.close()
    expected = {
        "db_cid": status["db_cid"], "version_vector": status["version_vector"],
        "rows": status["rows"], "results_by_model": digest, "models": models["rows"],
        "model_columns": models["columns"], "deleted_result_id": rid,
        "peer_id": status["peer_id"],
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    source = base / "c" / "p0"
    for name in ["identity.key", "duckpeer.duckdb", "duckpeer.blocks"]:
        if (source / name).is_dir():
            shutil.copytree(source / name, out / name)
        else:
            shutil.copy2(source / name, out / name)
    (out / "expected.json").write_text(json.dumps(expected, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
