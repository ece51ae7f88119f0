"""The peer network: the libp2p adapter, framing, gossip, delta sync, bootstrap, status, identity."""
