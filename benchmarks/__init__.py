"""vaelab's benchmarks: ``python -m benchmarks NAME [options]`` runs one and prints its JSON report;
``--help`` lists them. The harness: ``benchmarks/harness.py``; the figures: docs/benchmarks.md."""
