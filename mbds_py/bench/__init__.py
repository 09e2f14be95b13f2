"""Benchmarks: each module has run(quick: bool) -> dict and runs as python -m mbds_py.bench.<name>."""
