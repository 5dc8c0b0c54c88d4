"""`qrag bench`: retrieval benchmark of qrag and its baselines (see runner.run_bench)."""
