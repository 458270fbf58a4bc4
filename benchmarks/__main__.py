"""``python -m benchmarks NAME [options]``: run one benchmark (``--help`` lists them)."""

from benchmarks.harness import main

raise SystemExit(main())
