"""Comparisons of model versions (canary and shadow): the spec, the statistics (Welch,
paired, confidence sequence), the Beam-free kernel and the transform (``docs/slo.md``)."""
