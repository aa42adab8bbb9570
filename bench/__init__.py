"""`make bench`: throughput and latency on the local stack, beside the raw PostgreSQL ceiling."""
