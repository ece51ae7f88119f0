"""A fake kubo HTTP API for the snapshot-to-IPFS tests (the ``fake_kubo`` fixture of
tests/conftest.py serves it)."""

from __future__ import annotations

import email.parser
import email.policy
import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class FakeKubo(BaseHTTPRequestHandler):
    """A stand-in for kubo's /api/v0/dag/import (no IPFS node here): records each
    request and answers like kubo (NDJSON, one Root line)."""

    received: list[dict[str, Any]] = []
    status = 200
    pin_error = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        parts = list(message.iter_parts())
        car = parts[0].get_payload(decode=True) if parts else b""
        self.received.append({"path": self.path, "car": car, "filename": parts[0].get_filename()})
        answer = {"Root": {"Cid": {"/": "bafyroot"}, "PinErrorMsg": self.pin_error}}
        data = (json.dumps(answer) + "\n").encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass
