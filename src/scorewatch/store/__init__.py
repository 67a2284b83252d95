"""scorewatch.store."""
