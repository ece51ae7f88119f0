"""User writes turned into changesets.

- ``changes``: records, ingest chunks, updates, deletes and imports as row changes,
  validated (a bad value names its field and row).
- ``resolve``: open conflicts, and the change that resolves one.
- ``methods``: ``record``, ``ingest``, ``update``, ``delete``, ``import_rows``;
  ``conflict_methods``: ``conflicts_list``, ``conflicts_show``, ``conflicts_resolve``.
"""
