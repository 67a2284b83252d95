"""scorewatch.ingest."""
