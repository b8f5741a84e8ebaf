"""Benchmarks (run as scripts; ``synthetic_annotation`` is also imported by other benchmarks)."""
