"""``msewatch run ... --pushgateway URL``: push a bounded run's latest metrics to a
Prometheus Pushgateway, for batch jobs that no Prometheus can scrape while they run.

What is pushed is exactly what ``msewatch serve`` exposes on ``/metrics`` for the same
output folder (``serve.TablesCollector``: per slice the latest settled window's RMSE,
MSE, coverage, lag quantiles, NaN counts, the trend; per SLO its burn rates, budget and
alert state; per comparison its decision), read from the committed tables after the run.

Grouping: the metrics go under ``job`` (``--pushgateway-job``, default ``msewatch``) and
a grouping key, by default ``output=<the output folder's absolute path>``; give
``--pushgateway-group model=demand-forecast`` (repeatable) to name it yourself. A push
is a PUT: it replaces the metrics of that group, the previous run's, and no other
group's, so two models (two outputs, or two group keys) never clobber each other.
Scrape the Pushgateway with ``honor_labels: true`` so that the pushed ``job`` and group
labels are kept.
"""

from __future__ import annotations

import os
import re
import urllib.error

from msewatch.transforms.io.delivery import check_http_url

DEFAULT_JOB = "msewatch"
TIMEOUT_S = 30.0
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_group(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--pushgateway-group``; KEY a Prometheus label name.

    Raises:
        ValueError: not ``KEY=VALUE``, a key that is not a label name or is ``job``, or
            an empty value.
    """
    key, sep, value = text.partition("=")
    if not sep or not _LABEL.fullmatch(key) or key == "job" or key.startswith("__") or not value:
        raise ValueError(
            "--pushgateway-group must be KEY=VALUE with KEY a label name other than job "
            f"([a-zA-Z_][a-zA-Z0-9_]*) and a value, e.g. model=demand-forecast; got {text[:100]!r}"
        )
    return key, value


def check(url: str | None, job: str, groups, output: str, bounded: bool) -> dict[str, str]:
    """Checks the push settings before the run; returns the grouping key.

    Raises:
        ValueError: a malformed URL or job, a key given twice, an output that is not a
            local folder, or a streaming run.
    """
    if url is None:
        return {}
    check_http_url(url, "--pushgateway")
    if not _LABEL.fullmatch(job or ""):
        raise ValueError(
            f"--pushgateway-job must be a label value of letters, digits and '_'; got {job!r}"
        )
    if not bounded:
        raise ValueError(
            "--pushgateway pushes at the end of a bounded run; for a stream, let "
            "Prometheus scrape `msewatch serve OUTPUT`"
        )
    if "://" in output:
        raise ValueError(
            "--pushgateway reads the tables of a local --output folder; "
            f"{output} is not one (run msewatch serve where the tables are)"
        )
    key: dict[str, str] = {}
    for name, value in groups or ():
        if name in key:
            raise ValueError(f"--pushgateway-group {name} is given twice")
        key[name] = value
    return key or {"output": os.path.abspath(output)}


def push(url: str, job: str, grouping_key: dict[str, str], output: str) -> int:
    """Pushes the metrics of the tables in ``output``; returns the number of samples.

    Raises:
        OSError: the Pushgateway cannot be reached or refuses the push (one line).
    """
    from prometheus_client import CollectorRegistry, push_to_gateway

    from msewatch.commands.serve import TablesCollector

    failures: list[str] = []
    collector = TablesCollector(output, log=failures.append)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    collector.refresh()
    if failures:
        raise OSError(failures[0].removeprefix("msewatch serve: "))
    samples = sum(len(family.samples) for family in registry.collect())
    try:
        push_to_gateway(url, job=job, registry=registry, grouping_key=grouping_key,
                        timeout=TIMEOUT_S)  # fmt: skip
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace").strip().splitlines()
        raise OSError(f"the Pushgateway at {url} refused the push: HTTP {error.code} "
                      f"{(body or [error.reason])[0][:200]}") from None  # fmt: skip
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise OSError(f"cannot reach the Pushgateway at {url}: {reason}") from None
    return samples
