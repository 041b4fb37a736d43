"""The stateful join of predictions and labels: the transform, its kernel, tombstones."""
