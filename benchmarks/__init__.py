"""vaelab's benchmarks: ``python -m benchmarks NAME [options]`` runs one and prints its JSON report;
``python -m benchmarks --help`` lists them. The harness is ``benchmarks/harness.py``; the figures, with
their machines and commands, are in docs/benchmarks.md."""
