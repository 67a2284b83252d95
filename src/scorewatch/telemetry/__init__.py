"""scorewatch.telemetry."""
