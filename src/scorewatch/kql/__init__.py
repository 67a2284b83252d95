"""scorewatch.kql."""
