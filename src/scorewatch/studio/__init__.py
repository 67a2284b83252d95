"""scorewatch.studio."""
