"""Benchmarks (run as scripts: `.venv/bin/python bench/<name>.py`); a package so that
`bench/dsr.py` is `bench.dsr` to mypy, not a second `dsr`."""
