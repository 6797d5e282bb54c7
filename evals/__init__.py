"""GAIA-style evaluation, continual-learning streams and benchmarks."""
