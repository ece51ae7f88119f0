"""The local query path: sandbox, fingerprints, rewrites, the result cache and its sharing, analysis."""
