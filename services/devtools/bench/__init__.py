"""Benchmarks (``make bench``): each area's ``run(sample, workdir) -> dict`` in a fresh subprocess."""
