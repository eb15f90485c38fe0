"""Benchmarks of the publisher against the machine's own ceilings: ``python -m bench``."""
