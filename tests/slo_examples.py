"""SLO files shared by the tests that run the pipeline with ``--slo``."""

RMSE_PAGE = """
version: 1
slos:
  - name: rmse
    sli: rmse
    threshold: 5
    objective: 0.9
    period: 1d
    slices: ["region=*"]
    min_coverage: 0.8
    min_scored: 30
    alerting:
      page: [{long: 2h, short: 1h, burn_rate: 5}]
      ticket: []
    keep_firing_for: 1h
    runbook: https://wiki.example/runbooks/rmse
"""
"""One rmse SLO per region: bad above 5, pages at 5x over 2 h and 1 h, no tickets."""
