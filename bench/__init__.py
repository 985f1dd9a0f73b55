"""Benchmarks: each module here with a `run(quick: bool = False) -> dict` is one benchmark.

Figures are ratios against a baseline measured in the same run (these machines are noisy), plus
the absolute numbers for context. `make bench` runs them all; `python -m bench --only NAME`.
"""
