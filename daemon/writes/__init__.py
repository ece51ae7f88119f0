"""User writes turned into changesets: records, ingests, updates, deletes, imports, conflict resolutions."""
