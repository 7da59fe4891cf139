"""Helpers shared by the test suites and benchmarks (not used by the operator itself)."""
