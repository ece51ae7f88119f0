"""duckpeerd: the trio daemon that replicates the benchmark database between peers."""
