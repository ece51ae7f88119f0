-- duckpeer store v4: what every peer we know holds, so that the changeset log can be
-- pruned of the changesets all of them have (daemon/store/history.py): per peer its
-- last announced version vector (JSON, origin -> seq) and when we heard it (unix s).
CREATE TABLE IF NOT EXISTS store.known_peers (
    peer VARCHAR PRIMARY KEY,
    vector VARCHAR NOT NULL,
    seen_at DOUBLE NOT NULL
);
