"""Snapshots of the database as UnixFS/CAR archives, and bootstrap from peers."""
