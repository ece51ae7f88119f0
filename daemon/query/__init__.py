"""The local query path.

- ``sandbox``: what a query may read (one read-only SELECT over our tables).
- ``fingerprint``, ``rewrite``: normalized fingerprints, result-preserving rewrites.
- ``cached``: running a query through the result cache; ``resultcache``: the cache
  itself (GDSF eviction); ``strategy``: per-query caching from measured cost;
  ``cachestate``: the per-daemon cache state; ``share``: ``/duckpeer/cache/1``;
  ``prefetch``: re-running hot queries when the database changes.
- ``analyze``: ``--analyze`` profiles and advice.
- ``methods``: ``query``; ``cache_methods``: cache stats, clear, explain, analyze.
"""
