"""Benchmarks: each prints its figures and a baseline measured in the same run (python -m bench.<name>)."""
