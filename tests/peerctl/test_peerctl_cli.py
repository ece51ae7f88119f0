"""peerctl.cli.main: argument errors, exit codes, output, and a fast, light import."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from peerctl.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_UNREACHABLE, EXIT_USAGE, main
from protocol import control
from protocol.control import ControlResponse
from protocol.framing import FrameDecoder, encode_frame

REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def one_error_line(err: list[str]) -> str:
    assert len(err) == 1, err
    assert err[0].startswith("peerctl: ")
    return err[0]


# -- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["status", "--bogus"],
        ["--socket"],
        ["query"],
        ["connect"],
        ["record", "--model", "bert"],
        ["record", "--model", "m", "--hardware", "h", "--throughput", "abc", "--latency", "1"],
        ["record", "--model", "m", "--hardware", "h", "--throughput", "1", "--latency", "1",
         "--batch-size", "1.5"],
        ["ingest"],
        ["ingest", "x.csv", "--chunk-size", "many"],
        ["query", "SELECT 1", "--max-rows", "ten"],
        ["update", "models", "bert"],
        ["delete", "models"],
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = run(capsys, argv)
    assert code == EXIT_USAGE == 2
    assert out == ""
    one_error_line(err)


@pytest.mark.parametrize("item", ["novalue", "=5", ""])
def test_bad_set_expression(capsys: pytest.CaptureFixture[str], item: str) -> None:
    code, out, err = run(capsys, ["update", "models", "bert", "--set", item])
    assert code == EXIT_USAGE and out == ""
    assert "COL=VALUE" in one_error_line(err)


def test_ingest_argument_errors_before_contacting_the_daemon(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = tmp_path / "r.csv"
    good.write_text("model,hardware,throughput,latency\nm,cpu,1,2\n")
    (tmp_path / "r.xlsx").write_text("x")
    for argv in (
        ["ingest", str(good), "--chunk-size", "0"],
        ["ingest", str(tmp_path / "missing.csv")],
        ["ingest", str(tmp_path / "r.xlsx")],
        ["ingest", str(tmp_path)],
    ):
        code, out, err = run(capsys, argv)
        assert (code, out) == (EXIT_USAGE, ""), argv
        one_error_line(err)


# -- no daemon ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["peers"],
        ["query", "SELECT 1"],
        ["record", "--model", "m", "--hardware", "h", "--throughput", "1", "--latency", "2"],
        ["delete", "models", "m"],
    ],
)
def test_unreachable_socket_exits_3_with_one_line(
    capsys: pytest.CaptureFixture[str], sock_dir: Path, argv: list[str]
) -> None:
    code, out, err = run(capsys, ["--socket", str(sock_dir / "none.sock"), *argv])
    assert code == EXIT_UNREACHABLE == 3
    assert out == ""
    assert "none.sock" in one_error_line(err)


def test_unreachable_via_env_and_stale_socket_file(
    capsys: pytest.CaptureFixture[str], sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = sock_dir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    monkeypatch.setenv("DUCKPEER_SOCKET", str(stale))
    code, out, err = run(capsys, ["status"])
    assert (code, out) == (EXIT_UNREACHABLE, "")
    assert "stale.sock" in one_error_line(err)


def test_ingest_with_no_daemon_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"model": "m", "hardware": "h", "throughput": 1, "latency": 2}))
    code, out, err = run(capsys, ["ingest", str(path)])
    assert (code, out) == (EXIT_UNREACHABLE, "")
    one_error_line(err)


# -- against a fake daemon ---------------------------------------------------------------------


def arrow_rows(stream: bytes) -> int:
    """Rows of the Arrow IPC stream peerctl ingest sends."""
    import pyarrow as pa

    return int(pa.ipc.open_stream(stream).read_all().num_rows)


class FakeDaemon:
    """A blocking control-socket server answering from a dict of canned handlers."""

    def __init__(self, path: Path, handlers: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                decoder = FrameDecoder(control.MAX_CONTROL_FRAME)
                while data := self.request.recv(65536):
                    decoder.feed(data)
                    while (frame := decoder.next_frame()) is not None:
                        req = control.decode_request(frame)
                        fake.calls.append((req.method, req.params))
                        try:
                            resp = ControlResponse(req.id, handlers[req.method](req.params))
                        except LookupError:
                            resp = ControlResponse(req.id, None, "unknown_method", "no such")
                        except ValueError as exc:
                            resp = ControlResponse(req.id, None, "bad_request", str(exc))
                        except RuntimeError as exc:
                            resp = ControlResponse(req.id, None, "internal", str(exc))
                        payload = control.encode_response(resp)
                        self.request.sendall(encode_frame(payload, control.MAX_CONTROL_FRAME))

        self.server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeDaemon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def bad_sql(params: dict[str, Any]) -> Any:
    raise ValueError("only SELECT queries are allowed, not DROP")


def broken(params: dict[str, Any]) -> Any:
    raise RuntimeError("disk full")


HANDLERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "query": lambda p: {"columns": ["model", "n"], "rows": [["bert", 2], ["gpt2", None]],
                        "elapsed_ms": 1.5}
    if "DROP" not in p["sql"] else bad_sql(p),
    "record": lambda p: {"result_id": "0190-abc", "cid": "bafk"},
    "ingest": lambda p: {"rows": 0} if p == {"begin": True} else {
        "rows": arrow_rows(p["arrow"]), "cid": "bafk", "seq": 1},
    "delete": lambda p: broken(p),
    "update": lambda p: {"cid": "bafk-upd", "seq": 2},
}  # fmt: skip


@pytest.fixture
def daemon(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDaemon]:
    path = sock_dir / "fake.sock"
    with FakeDaemon(path, HANDLERS) as fake:
        monkeypatch.setenv("DUCKPEER_SOCKET", str(path))
        yield fake


def test_query_table_and_json(capsys: pytest.CaptureFixture[str], daemon: FakeDaemon) -> None:
    code, out, err = run(capsys, ["query", "SELECT 1", "--max-rows", "5"])
    assert (code, err) == (EXIT_OK, [])
    lines = out.splitlines()
    assert lines[0].split() == ["model", "n"]
    assert lines[2].split() == ["bert", "2"] and lines[3].split() == ["gpt2"]
    assert lines[-1] == "(2 rows, 1.5 ms)"
    assert daemon.calls[-1] == ("query", {"sql": "SELECT 1", "max_rows": 5})

    code, out, err = run(capsys, ["query", "SELECT 1", "--json"])
    assert code == EXIT_OK
    assert json.loads(out) == [{"model": "bert", "n": 2}, {"model": "gpt2", "n": None}]


def test_refused_request_exits_2_and_failure_exits_1(
    capsys: pytest.CaptureFixture[str], daemon: FakeDaemon
) -> None:
    code, out, err = run(capsys, ["query", "DROP TABLE models"])
    assert (code, out) == (EXIT_USAGE, "")
    assert "only SELECT" in one_error_line(err)

    code, out, err = run(capsys, ["delete", "models", "bert"])
    assert (code, out) == (EXIT_FAILED, "")
    assert "disk full" in one_error_line(err)

    code, out, err = run(capsys, ["peers"])  # the fake does not know it
    assert (code, out) == (EXIT_USAGE, "")
    one_error_line(err)


def test_record_and_update(capsys: pytest.CaptureFixture[str], daemon: FakeDaemon) -> None:
    argv = ["record", "--model", "bert", "--hardware", "cuda", "--throughput", "812.5",
            "--latency", "9.8", "--batch-size", "8"]  # fmt: skip
    code, out, _ = run(capsys, argv)
    assert (code, out) == (EXIT_OK, "0190-abc\n")
    assert daemon.calls[-1] == (
        "record",
        {"record": {"model_name": "bert", "hardware_type": "cuda", "throughput": 812.5,
                    "latency": 9.8, "batch_size": 8}},
    )  # fmt: skip

    code, out, _ = run(
        capsys, ["update", "models", "bert", "--set", "parameters_million=110",
                 "--set", "model_family=bert", "--set", "source=null", "--json"]
    )  # fmt: skip
    assert code == EXIT_OK and json.loads(out) == {"cid": "bafk-upd", "seq": 2}
    assert daemon.calls[-1] == (
        "update",
        {"table": "models", "key": "bert",
         "set": {"parameters_million": 110, "model_family": "bert", "source": None}},
    )  # fmt: skip


def test_ingest_with_bad_rows_exits_4(
    capsys: pytest.CaptureFixture[str], daemon: FakeDaemon, tmp_path: Path
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "model,hardware,throughput,latency\n"
        + "".join(f"m{i},cpu,{i},1\n" for i in range(5))
        + "bad,cpu,fast,1\n"
    )
    code, out, err = run(capsys, ["ingest", str(path), "--chunk-size", "2", "--json"])
    assert code == EXIT_PARTIAL
    summary = json.loads(out)
    assert (summary["rows"], summary["bad_rows"], summary["changesets"]) == (5, 1, 3)
    assert summary["errors"][0].startswith("line 7: ")
    assert daemon.calls[0] == ("ingest", {"begin": True})  # the daemon loads Arrow meanwhile
    assert [c[0] for c in daemon.calls[1:]] == ["ingest"] * 3

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"model": "m", "hardware": "h", "throughput": 1, "latency": 2}))
    code, out, err = run(capsys, ["ingest", str(good)])
    assert code == EXIT_OK and err == []
    assert out.startswith("ingested 1 rows in 1 changesets")


# -- start-up cost -------------------------------------------------------------------------------


def test_import_is_light() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import peerctl.cli"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=True,
    )
    modules = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "peerctl.cli" in modules
    heavy = {m for m in modules if m.split(".")[0] in {"libp2p", "duckdb", "trio", "pyarrow"}}
    assert heavy == set()
