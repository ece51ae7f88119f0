"""Persistent Ed25519 identity: the peer id survives restarts."""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair

KEY_FILE = "identity.key"


class IdentityError(Exception):
    """The identity file exists but cannot be used."""


def load_or_create_identity(data_dir: Path) -> KeyPair:
    """Read ``identity.key`` from the data dir, creating it (mode 0600) if absent."""
    path = data_dir / KEY_FILE
    if path.exists():
        try:
            private = Ed25519PrivateKey.from_bytes(path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise IdentityError(f"cannot load identity {path}: {exc}") from exc
        return KeyPair(private, private.get_public_key())
    private = Ed25519PrivateKey.new()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private.to_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return KeyPair(private, private.get_public_key())
