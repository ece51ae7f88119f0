"""Rows, the changeset log and chain heads in DuckDB: applying changesets, conflict bookkeeping, signatures."""
