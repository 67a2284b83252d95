"""scorewatch.scoring."""
