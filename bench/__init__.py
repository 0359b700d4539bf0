"""Benchmarks for meterbridge: intake, end to end, growth of the log, scale-out.

Each is one command (``python -m bench.<name> --help``); see bench/README.md.
"""
