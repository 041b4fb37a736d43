"""Parsing input records into Arrow batches: one module per format, shared validation."""
