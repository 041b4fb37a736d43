"""Windowed error metrics: the transform, accumulators, the lag sketch, slices, windows."""
