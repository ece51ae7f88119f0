-- duckpeer schema v2: conflict bookkeeping (idempotent; see protocol/conflicts.py).
-- Keys are the key's canonical text, as in store.tombstones.

-- Heads of keys with several heads (open conflicts under `manual`): every concurrent
-- version with its whole row as wire-typed JSON (NULL for a delete).
CREATE TABLE IF NOT EXISTS store.conflict_heads (
    tbl VARCHAR NOT NULL,
    pk VARCHAR NOT NULL,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL,
    op TINYINT NOT NULL,
    data VARCHAR,
    PRIMARY KEY (tbl, pk, _hlc, _origin)
);

-- Versions named as a base by an arrived change whose own change has not arrived yet.
CREATE TABLE IF NOT EXISTS store.pending_bases (
    tbl VARCHAR NOT NULL,
    pk VARCHAR NOT NULL,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL,
    PRIMARY KEY (tbl, pk, _hlc, _origin)
);

-- Under `merge`: columns whose version is older than their row's (_hlc, _origin).
CREATE TABLE IF NOT EXISTS store.cell_versions (
    tbl VARCHAR NOT NULL,
    pk VARCHAR NOT NULL,
    col VARCHAR NOT NULL,
    _hlc BIGINT NOT NULL,
    _origin VARCHAR NOT NULL,
    PRIMARY KEY (tbl, pk, col)
);
