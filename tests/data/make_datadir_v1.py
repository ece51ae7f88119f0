"""Make a v1 data dir with the code at main 3486711 (run from an unchanged worktree)."""
import json, shutil, sys, tempfile, time
from pathlib import Path
from daemon.localcluster import LocalCluster, LocalPeer, wait_until

out = Path(sys.argv[1])
base = Path(tempfile.mkdtemp(prefix="dpfx-"))
csv = base / "r.csv"
lines = ["model_name,hardware_type,device_name,batch_size,precision,throughput,latency,memory_mb"]
for i in range(300):
    lines.append(f"model-{i%7},cuda,A{i%3},{1<<(i%5)},fp16,{100+i*0.5},{1+i*0.01},{1000+i}")
csv.write_text("\n".join(lines) + "\n")
with LocalCluster(2, base_dir=base / "c", keep=True) as cluster:
    a, b = cluster.peers
    ca, cb = a.client(), b.client()
    rid = ca.store_performance_result(model_name="bert-base-uncased", hardware_type="cuda",
        device_name="A100", throughput=812.5, latency=9.8, batch_size=8, precision="fp16", memory_mb=2100.0)
    cb.store_performance_result(model_name="gpt2", hardware_type="cpu", throughput=50.0, latency=20.0)
    import subprocess
    subprocess.run([sys.executable, "-m", "peerctl", "--socket", str(a.socket), "ingest", str(csv)], check=True)
    cluster.wait_converged(30)
    ca.update("models", "bert-base-uncased", {"modality": "text", "parameters_million": 110.0})
    ca.delete("performance_results", rid)
    cb.update("hardware_platforms", "cpu", {"platform": "linux"})
    cluster.wait_converged(30)
    st = a.status()
    rows = ca.query("SELECT count(*) FROM performance_results")["rows"]
    digest = ca.query("SELECT model_id, count(*), round(sum(throughput_items_per_second), 3) FROM performance_results GROUP BY 1 ORDER BY 1")["rows"]
    models = ca.query("SELECT * FROM models ORDER BY model_id")
    ca.close(); cb.close()
expected = {"db_cid": st["db_cid"], "version_vector": st["version_vector"], "rows": st["rows"],
            "results_by_model": digest, "models": models["rows"], "model_columns": models["columns"],
            "deleted_result_id": rid, "peer_id": st["peer_id"]}
out.mkdir(parents=True, exist_ok=True)
d = base / "c" / "p0"
for name in ["identity.key", "duckpeer.duckdb", "duckpeer.blocks"]:
    src = d / name
    if src.is_dir(): shutil.copytree(src, out / name)
    else: shutil.copy2(src, out / name)
(out / "expected.json").write_text(json.dumps(expected, indent=1, default=str) + "\n")
print(json.dumps(expected, default=str)[:2000])
