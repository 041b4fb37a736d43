"""SLOs and burn-rate alerts gated on label coverage: the SLO file, the SLI rules and
the Beam-free evaluation (``docs/slo.md``)."""
