"""Distributed queries: planning, fragments, workers, partial results and the reduce."""
