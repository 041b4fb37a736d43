"""SLO files shared by the tests that run the pipeline with ``--slo``."""

import yaml

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


def paging(**fields) -> dict:
    """One SLO of an SLO file: ``fields`` (``name``, ``sli``, ``threshold``, ...) with the
    policy the pipeline tests share: objective 0.9 over a period of 1 d, one per region
    (``slices=None``: overall only), paging at 5x burn over 2 h and 1 h, no tickets."""
    slo = {
        "objective": 0.9,
        "period": "1d",
        "slices": ["region=*"],
        "alerting": {"page": [{"long": "2h", "short": "1h", "burn_rate": 5}], "ticket": []},
        **fields,
    }
    return {key: value for key, value in slo.items() if value is not None}


def slo_file(*slos: dict):
    """The :class:`SloFile` of these SLOs (as ``--slo FILE`` would read them)."""
    from msewatch.transforms.slo.config import parse_slo_file

    return parse_slo_file(yaml.safe_dump({"version": 1, "slos": list(slos)}, sort_keys=False))
