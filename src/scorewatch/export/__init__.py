"""scorewatch.export."""
