"""A BLS-like directory and DataUSA-like population API on 127.0.0.1: for the tests, the bench and offline runs.

`python -m bls_loopback` (`make serve`) serves a directory, or a generated sample of `pr`, until Ctrl-C.
"""
