"""Generated stubs of the scoresvc.v1 API (built from protos/ at install time)."""
