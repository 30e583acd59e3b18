"""The clawhost benchmark suite; run ``nox -s bench`` or ``python -m benchmarks``."""
