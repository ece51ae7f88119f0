"""The store: replicated rows, the changeset log and chain heads in one DuckDB file.

- ``database``: :class:`Store`, one data directory's database; commits and applies
  changesets in single transactions, serves deltas, runs read-only queries.
- ``apply``: a batch of changesets as a few SQL statements per table.
- ``rowsql``: the SQL those statements are built from; ``rowchanges``: row changes as
  Python objects for the strategies that look at rows.
- ``conflicts``: heads and pending bases per key (the ``manual`` bookkeeping);
  ``merge``: the per-column ``merge`` strategy.
- ``blocklog``: changeset bytes in append-only segment files.
- ``signing``: signing changesets and checking their signatures.
- ``migrations/``: the schema, as numbered SQL files.
"""
