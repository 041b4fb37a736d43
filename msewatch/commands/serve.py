"""serve the output tables as Prometheus metrics on /metrics, re-read when they change

This is ``msewatch serve OUTPUT [--listen HOST:PORT]``. A custom ``prometheus_client``
collector (:class:`TablesCollector`) answers every scrape from the tables of
``msewatch run --output OUTPUT``:

* per slice, the **latest settled window** (the ``metrics_latest`` view of
  :mod:`msewatch.commands.query`; settled as in :mod:`msewatch.commands.trend`: ``complete or
  label_coverage >= 0.8``, ``scored >= 30``, finite RMSE; the newest such window is
  the last one :func:`msewatch.commands.trend.slice_trends` fits): RMSE, MSE, MAE, bias, label
  coverage, label-lag p50/p90/p99, the NaN predictions and labels, and the window end;
* per slice, the RMSE trend of :func:`msewatch.commands.trend.slice_trends` (Theil–Sen over the
  last 24 settled windows), per second;
* per SLO and slice, the latest evaluation (the ``slo-status`` named query): error budget
  left, the burn rate of every lookback, each severity's alert state, the label frontier;
* per comparison and slice, the latest evaluation (the ``comparisons`` named query):
  decision, the relative difference and its always-valid bounds, margin, p-value, scored
  predictions. Read by column name; nothing without a ``comparisons`` table;
* with ``--recent-windows DURATION``, per slice and window of that span, the window's
  bounds, RMSE, label gate and error weights (:mod:`msewatch.commands.serve_windows`), which the
  rules of ``msewatch slo rules`` read;
* per slice shown, ``msewatch_slice_info`` (1) with one label per slice key, named by
  :func:`msewatch.transforms.labels.label_names` (the rule the alerts follow:
  ``sku-category`` -> ``sku_category``), to join on ``slice`` in PromQL.

docs/prometheus.md lists every metric (docs/observability.md their OTLP names). A NaN
number (nothing eligible, too few windows) is left out rather than exposed. Times are
UTC epoch seconds.

The tables are re-read when a Parquet file under their folders appears, disappears or
changes size or modification time; otherwise a scrape is answered from the last read.
A read that fails (a file being replaced) keeps the last good answer, counts the failure
in ``msewatch_serve_table_reads_total{result="error"}`` and prints one line on stderr.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from msewatch.commands import otlp
from msewatch.commands import query as q
from msewatch.commands.arguments import whole_seconds
from msewatch.commands.serve_windows import read_recent_windows, window_families
from msewatch.commands.trend import DEFAULT_K, slice_trends
from msewatch.schemas import layout, queries
from msewatch.schemas.slo import FIRING, OFF
from msewatch.transforms.compare.spec import DECISIONS
from msewatch.transforms.durations import format_duration
from msewatch.transforms.labels import label_names
from msewatch.transforms.metrics.slices import parse_slice_name
from msewatch.transforms.slo.spec import SEVERITIES

DEFAULT_LISTEN = "127.0.0.1:9464"
EXIT_USAGE = 2
TABLE_PATTERNS = (
    *q.METRICS_PATTERNS,
    "alerts/*.parquet",
    "slo_status/*.parquet",
    "comparisons/*.parquet",
)
"""The files whose names, sizes and modification times decide when to re-read."""
SECONDS_PER_DAY = 86400
_EPOCH = pd.Timestamp(0, tz="UTC")
SERVE_LABELS = ("slice", "slo", "comparison", "lookback", "severity", "decision", "role",
                "result", "sli", "job", "instance")  # fmt: skip
"""The label names of serve's own (and Prometheus's target labels): a slice key of one of
these names gets another (:func:`msewatch.transforms.labels.label_names`)."""
_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")

SLICE_GAUGES = (  # (metric, column of the latest settled window, help)
    ("msewatch_rmse", "rmse", "RMSE of the latest settled window (units of y)."),
    ("msewatch_mse", "mse", "MSE of the latest settled window (units of y squared)."),
    ("msewatch_mae", "mae", "MAE of the latest settled window (units of y)."),
    ("msewatch_bias", "mean_error", "Mean y_pred - y_true of the latest settled window."),
    ("msewatch_label_coverage_ratio", "label_coverage", "Labeled / predictions, same window."),
    ("msewatch_label_lag_p50_seconds", "label_lag_p50_s", "Label-lag median, same window."),
    ("msewatch_label_lag_p90_seconds", "label_lag_p90_s", "Label-lag p90, same window."),
    ("msewatch_label_lag_p99_seconds", "label_lag_p99_s", "Label-lag p99, same window."),
    ("msewatch_nan_predictions", "nan_predictions", "Predictions with a NaN/inf/null y_pred, "
     "same window."),
    ("msewatch_nan_labels", "nan_labels", "Labeled pairs with a NaN/inf/null y_true, same window."),
    ("msewatch_window_end_timestamp_seconds", "window_end", "End of that window, UTC epoch."),
)  # fmt: skip
TREND_GAUGES = (  # (metric, column of slice_trends, help); slopes per day -> per second
    ("msewatch_rmse_trend_slope_per_second", "slope_per_day", "Theil-Sen slope of RMSE."),
    ("msewatch_rmse_trend_slope_low_per_second", "low", "Lower end of its 95% interval."),
    ("msewatch_rmse_trend_slope_high_per_second", "high", "Upper end of its 95% interval."),
    ("msewatch_rmse_trend_windows", "windows", "Settled windows fitted."),
)
SLO_GAUGES = (
    ("msewatch_slo_error_budget_remaining_ratio", "budget_remaining", "Share of budget left."),
    ("msewatch_slo_frontier_timestamp_seconds", "frontier", "Label frontier evaluated, UTC."),
)
COMPARISON_GAUGES = (
    ("msewatch_comparison_relative_difference_ratio", "change", "Relative difference C / B - 1 "
     "of the candidate's mean loss C and the baseline's B (> 0: the candidate is worse)."),
    ("msewatch_comparison_relative_difference_ci_low_ratio", "ci_low", "Lower bound of the "
     "always-valid confidence interval of the relative difference candidate vs baseline."),
    ("msewatch_comparison_relative_difference_ci_high_ratio", "ci_high", "Its upper bound."),
    ("msewatch_comparison_margin_ratio", "margin", "Relative difference the candidate may not "
     "exceed."),
    ("msewatch_comparison_p_value", "p_value", "Fixed-horizon p-value, for reference."),
    ("msewatch_comparison_paired", "paired", "1: paired (shadow), 0: unpaired (canary)."),
    ("msewatch_comparison_frontier_timestamp_seconds", "frontier", "Frontier evaluated, UTC."),
)  # fmt: skip

_LATEST_SETTLED_SQL = """
SELECT m.slice, m.window_end, m.rmse, m.mse, m.mae, m.mean_error, m.label_coverage,
    m.label_lag_p50_s, m.label_lag_p90_s, m.label_lag_p99_s, m.nan_predictions, m.nan_labels
FROM metrics_latest AS m JOIN settled_ends AS t
    ON m.slice = t.slice AND m.window_end = t.last_window_end
QUALIFY row_number() OVER (PARTITION BY m.slice ORDER BY m.window_start DESC) = 1
ORDER BY m.slice
"""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; port 0 = any free port) -> ``(host, port)``."""
    m = _LISTEN.fullmatch(text or "")
    if not m or int(m.group("port")) > 65535:
        raise argparse.ArgumentTypeError(
            f"bad address {text!r}: use HOST:PORT with a port 0-65535, e.g. {DEFAULT_LISTEN}"
        )
    return m.group("v6") or m.group("host"), int(m.group("port"))


def _files(output_dir: str | Path, patterns: tuple[str, ...]) -> list[str]:
    """The files under ``output_dir`` matching ``patterns`` (only the patterns are globbed:
    a folder named ``out[1]`` is a name), sorted."""
    root = Path(output_dir)
    return sorted({str(p) for pattern in patterns for p in root.glob(pattern)})


def table_signature(output_dir: str | Path) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime_ns, size)`` of every file of :data:`TABLE_PATTERNS` in the committed
    snapshot (:func:`msewatch.schemas.layout.resolve`: a rerun's commit changes it), sorted."""
    rows = []
    for path in map(Path, _files(layout.resolve(output_dir), TABLE_PATTERNS)):
        try:
            st = path.stat()
        except FileNotFoundError:  # replaced between the listing and the stat
            continue
        rows.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(sorted(rows))


def read_tables(
    output_dir: str | Path, trend_windows: int = DEFAULT_K, recent_windows_s: int = 0
) -> dict[str, pd.DataFrame]:
    """The frames the metrics are made from: ``settled`` (the newest settled window per
    slice), ``trends`` (:func:`msewatch.commands.trend.slice_trends`), ``slo`` and ``comparisons``
    (the named queries ``slo-status`` and ``comparisons``: the latest evaluations) and
    ``windows`` (:mod:`msewatch.commands.serve_windows`; empty when ``recent_windows_s`` is 0).

    Raises:
        msewatch.commands.query.QueryError, duckdb.Error, pyarrow.ArrowException, OSError: a table
            cannot be read (no metrics table at all is not an error: empty frames).
    """
    try:
        con = q.connect(output_dir)
    except q.NoMetricsError:
        empty = pd.DataFrame()
        return dict.fromkeys(("settled", "trends", "slo", "comparisons", "windows"), empty)
    try:
        trends = slice_trends(con, trend_windows)
        con.register("settled_ends", trends[["slice", "last_window_end"]])
        settled = con.sql(_LATEST_SETTLED_SQL).df()
        slo = con.sql(queries.load_query("duckdb", "slo-status")).df()
        comparisons = con.sql(queries.load_query("duckdb", "comparisons")).df()
        windows = read_recent_windows(con, recent_windows_s) if recent_windows_s else pd.DataFrame()
    finally:
        con.close()
    frames = (settled, trends, slo, comparisons, windows)
    return dict(zip(("settled", "trends", "slo", "comparisons", "windows"), frames, strict=True))


def _number(value) -> float | None:
    """A sample value: timestamps in epoch seconds, booleans 0/1; None for NaN/null."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return (value - _EPOCH) / pd.Timedelta(seconds=1)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _gauges(frame: pd.DataFrame, labels: tuple[str, ...], specs) -> Iterator[Metric]:
    """One gauge family per ``(name, column, help)`` of ``specs`` with a row's ``labels``
    columns as labels; families whose column is absent or all NaN are left out."""
    for name, column, doc in specs:
        if frame.empty or column not in frame.columns:
            continue
        family = GaugeMetricFamily(name, doc, labels=list(labels))
        keys = frame[list(labels)].astype(str).itertuples(index=False)
        for key, value in zip(keys, frame[column], strict=True):
            number = _number(value)
            if number is not None:
                family.add_metric(list(key), number)
        if family.samples:
            yield family


def slice_families(settled: pd.DataFrame, trends: pd.DataFrame) -> Iterator[Metric]:
    """Per slice: the latest settled window and the RMSE trend."""
    yield from _gauges(settled, ("slice",), SLICE_GAUGES)
    if not trends.empty:
        per_day = ["slope_per_day", "low", "high"]
        trends = trends.assign(**{c: trends[c] / SECONDS_PER_DAY for c in per_day})
    yield from _gauges(trends, ("slice",), TREND_GAUGES)


def slo_families(slo: pd.DataFrame) -> Iterator[Metric]:
    """Per SLO and slice: budget, frontier, burn rate per lookback, alert state."""
    yield from _gauges(slo, ("slo", "slice"), SLO_GAUGES)
    if slo.empty:
        return
    burn = GaugeMetricFamily(
        "msewatch_slo_burn_rate",
        "Burn rate over a lookback of the SLO's alert conditions (1: spends the budget "
        "exactly over the period).",
        labels=["slo", "slice", "lookback"],
    )
    firing = GaugeMetricFamily(
        "msewatch_slo_alert_firing",
        "1 while the SLO's alert of this severity fires for the slice, else 0 (absent: "
        "the severity has no conditions).",
        labels=["slo", "slice", "severity"],
    )
    value = GaugeMetricFamily(
        "msewatch_slo_sli_value",
        "The SLI's value in the newest evaluated window (rmse: RMSE; error_rate, nan_rate, "
        "label_freshness, label_anomaly: a share; traffic: predictions / trailing median; "
        "prediction_drift, label_drift, feature_drift: the drift statistic).",
        labels=["slo", "slice", "sli"],
    )
    threshold = GaugeMetricFamily(
        "msewatch_slo_threshold",
        "The SLO's threshold, in the units of msewatch_slo_sli_value.",
        labels=["slo", "slice", "sli"],
    )
    for r in slo.itertuples(index=False):
        for family, number in ((value, _number(r.value)), (threshold, _number(r.threshold))):
            if number is not None:
                family.add_metric([r.slo, r.slice, r.sli], number)
        for lookback, rate in zip(r.lookbacks_s, r.burn_rates, strict=True):
            if (number := _number(rate)) is not None:
                burn.add_metric([r.slo, r.slice, format_duration(int(lookback))], number)
        for severity in SEVERITIES:
            state = getattr(r, f"{severity}_state")
            if state != OFF:
                firing.add_metric([r.slo, r.slice, severity], float(state == FIRING))
    yield from (f for f in (burn, firing, value, threshold) if f.samples)


def comparison_families(comparisons: pd.DataFrame) -> Iterator[Metric]:
    """Per comparison and slice: the latest decision, its bounds and counts."""
    if comparisons.empty:
        return
    labels = ("comparison", "slice")
    if "decision" in comparisons.columns:
        decision = GaugeMetricFamily(
            "msewatch_comparison_decision",
            "1 for the latest decision (FAIL, PASS or INCONCLUSIVE), 0 for the others.",
            labels=[*labels, "decision"],
        )
        for key, latest in zip(
            comparisons[list(labels)].astype(str).itertuples(index=False),
            comparisons["decision"],
            strict=True,
        ):
            if isinstance(latest, str):
                for d in DECISIONS if latest in DECISIONS else (*DECISIONS, latest):
                    decision.add_metric([*key, d], float(d == latest))
        if decision.samples:
            yield decision
    yield from _gauges(comparisons, labels, COMPARISON_GAUGES)
    roles = comparisons.rename(columns={"n_baseline": "baseline", "n_candidate": "candidate"})
    present = [r for r in ("baseline", "candidate") if r in roles.columns]
    if present:
        n = roles.melt(list(labels), present, var_name="role", value_name="n")
        spec = (("msewatch_comparison_scored_predictions", "n", "Scored predictions compared."),)
        yield from _gauges(n, (*labels, "role"), spec)


def slice_info_family(slices: Iterable[str]) -> Iterator[Metric]:
    """``msewatch_slice_info`` (1) per slice, labelled ``slice`` and one label per slice
    key; the key labels are named over every key of ``slices`` at once, so a key has the
    same label name on every sample."""
    pairs = {}
    for name in sorted(set(slices)):
        try:
            pairs[name] = parse_slice_name(name)
        except ValueError:  # not a slice name msewatch writes: no key labels for it
            pairs[name] = ()
    if not pairs:
        return
    names = label_names({k for p in pairs.values() for k, _ in p}, reserved=SERVE_LABELS)
    family = GaugeMetricFamily(
        "msewatch_slice_info",
        "1 per slice, with one label per slice key (sku-category: sku_category), to join on slice.",
        labels=[],
    )
    for name, p in pairs.items():
        family.add_sample("msewatch_slice_info", {"slice": name, **{names[k]: v for k, v in p}}, 1)
    yield family


def _slices(frames: dict[str, pd.DataFrame]) -> list[str]:
    """Every slice name in ``frames``."""
    return [s for f in frames.values() if "slice" in f.columns for s in f["slice"].astype(str)]


class TablesCollector(Collector):
    """A ``prometheus_client`` collector over the tables of one output folder.

    Thread-safe: the HTTP server answers scrapes in threads; one re-reads at a time.

    Args:
        output_dir: the ``--output`` folder of ``msewatch run``.
        trend_windows: settled windows per RMSE trend fit.
        recent_windows_s: export the per-window series of the windows ending in this
            many seconds before each slice's newest window end (0: none).
        clock: wall-clock seconds, for the last successful read's time.
        log: where a failed read is reported (one line).
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        trend_windows: int = DEFAULT_K,
        recent_windows_s: int = 0,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] | None = None,
    ):
        self.output_dir = Path(output_dir)
        self.trend_windows = trend_windows
        self.recent_windows_s = recent_windows_s
        self._clock = clock
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._families: list[Metric] = []
        self._reads = {"ok": 0, "error": 0}
        self._read_at: float | None = None

    def refresh(self) -> None:
        """Re-reads the tables if their files changed since the last read (or failure)."""
        import duckdb  # here, not at import: `msewatch run` loads this module for its options

        with self._lock:
            signature = table_signature(self.output_dir)
            if signature == self._signature:
                return
            self._signature = signature
            try:
                frames = read_tables(self.output_dir, self.trend_windows, self.recent_windows_s)
                families = [
                    *slice_families(frames["settled"], frames["trends"]),
                    *slo_families(frames["slo"]),
                    *comparison_families(frames["comparisons"]),
                    *window_families(frames["windows"], _gauges),
                    *slice_info_family(_slices(frames)),
                ]
            except (q.QueryError, OSError, ValueError, pa.ArrowException, duckdb.Error) as e:
                self._reads["error"] += 1
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if not isinstance(e, q.QueryError):  # a QueryError names the folder itself
                    first = f"cannot read the tables in {self.output_dir}: {first}"
                self._log(f"msewatch serve: {first}; serving the last good read")
                return
            self._families = families
            self._reads["ok"] += 1
            self._read_at = self._clock()

    def collect(self) -> Iterable[Metric]:
        self.refresh()
        with self._lock:
            families, reads, read_at = list(self._families), dict(self._reads), self._read_at
        yield from families
        counter = CounterMetricFamily(
            "msewatch_serve_table_reads",
            "Reads of the output tables (on a change of their files), by result.",
            labels=["result"],
        )
        for result, count in reads.items():
            counter.add_metric([result], count)
        yield counter
        if read_at is not None:
            yield GaugeMetricFamily(
                "msewatch_serve_last_read_timestamp_seconds",
                "When the tables were last read successfully, UTC epoch (wall clock).",
                value=read_at,
            )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch serve`` arguments to ``parser``."""
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of `msewatch run`")
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=parse_listen(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"address of the /metrics endpoint (default {DEFAULT_LISTEN}; port 0: any free)",
    )
    parser.add_argument(
        "--recent-windows",
        type=whole_seconds,
        default=0,
        metavar="DURATION",
        help="also one series per slice and window ending in this span before the slice's "
        "newest window, e.g. 3d (what `msewatch slo rules` reads; default: none)",
    )
    otlp.add_serve_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch serve`` until SIGINT or SIGTERM (pushing over OTLP too with
    ``--otlp``); 2 on a user mistake."""
    from prometheus_client import start_http_server

    out = Path(args.output)
    host, port = args.listen
    if not out.is_dir():
        what = "is a file, not a folder" if out.exists() else "does not exist"
        print(
            f"msewatch: error: output folder {out} {what}; pass the --output of `msewatch run`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    collector = TablesCollector(out, recent_windows_s=args.recent_windows)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        print(
            f"msewatch: error: cannot listen on {host}:{port}: {reason}; "
            "pass --listen HOST:PORT with an address of this machine and a free port",
            file=sys.stderr,
        )
        return EXIT_USAGE
    collector.refresh()  # read once now: a broken table shows at start
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    if not _files(out, q.METRICS_PATTERNS):
        print(f"no metrics table in {out} yet: serving the tables once `msewatch run` writes them")
    print(f"serving http://{shown}:{bound_port}/metrics from {out} (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    pusher = otlp.Pusher(collector, args.otlp, out) if args.otlp else None
    pushing = otlp.push_every(pusher, args.otlp_interval, stop) if pusher else None
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        signal.signal(signal.SIGTERM, previous)
        if pushing:
            pusher.interrupt()  # a push waiting to retry gives up
            pushing.join(timeout=otlp.TIMEOUT_S + 5)
            pusher.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    return 0
