"""Push a CAR file to an IPFS node's HTTP RPC API (kubo): ``/api/v0/dag/import``.

The archive is streamed as a multipart/form-data body (never held in memory) and its
roots are pinned (``pin-roots=true``). Blocking; run it in a worker thread.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

READ_CHUNK = 1 << 20


class IpfsPushError(Exception):
    """The IPFS node could not be reached or refused the archive."""


def push_car(api: str, path: Path, timeout: float = 600.0) -> dict[str, Any]:
    """Import the CAR at ``path`` into the node at ``api`` and pin its roots.

    Returns ``{"api", "roots": [CID...], "bytes"}`` from the node's answer.
    """
    boundary = secrets.token_hex(16)
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/vnd.ipld.car\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)
    request = urllib.request.Request(
        api.rstrip("/") + "/api/v0/dag/import?pin-roots=true",
        data=_body(head, path, tail),
        method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(size),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        detail = exc.read(4096).decode(errors="replace").strip()
        raise IpfsPushError(f"{api}: HTTP {exc.code}: {detail[:300]}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise IpfsPushError(f"{api}: {exc}") from exc
    return {"api": api, "roots": _roots(answer), "bytes": size}


def _body(head: bytes, path: Path, tail: bytes) -> Iterator[bytes]:
    yield head
    with path.open("rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            yield chunk
    yield tail


def _roots(answer: bytes) -> list[str]:
    """Pinned roots from kubo's NDJSON answer; a pin error is an IpfsPushError."""
    roots = []
    for line in answer.decode(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        root = item.get("Root") if isinstance(item, dict) else None
        if isinstance(root, dict):
            if root.get("PinErrorMsg"):
                raise IpfsPushError(f"pinning failed: {root['PinErrorMsg']}")
            cid = root.get("Cid")
            roots.append(cid.get("/") if isinstance(cid, dict) else str(cid))
    return roots
