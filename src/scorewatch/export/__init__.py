"""Continuous and one-shot export of stored telemetry to files, Azure Blob or S3 (docs/export.md)."""
