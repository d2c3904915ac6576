"""Workload generation and benchmarks (run as scripts; they print figures, they assert nothing)."""
