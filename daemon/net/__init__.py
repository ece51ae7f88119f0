"""The peer network.

- ``network``: the narrow adapter over py-libp2p (host, gossipsub topic, streams);
  ``framed``: length-prefixed frames over any byte stream.
- ``gossip``: announces (ours and others'), pushed changesets, dialing peers we hear of.
- ``sync``: delta sync over ``/duckpeer/sync/1``, and anti-entropy.
- ``bootstrap``: staying connected to bootstrap peers; mDNS discovery.
- ``peerstatus``: ``/duckpeer/status/1``; ``identity``: the peer's key file.
- ``methods``: control methods ``status``, ``peers``, ``connect``, ``sync``.
"""
