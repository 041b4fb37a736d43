"""Tests of ``msewatch report``: the HTML's content, and the page in headless Chromium.

Content is checked against pandas computations on the same synthetic rows the query
tests write (see ``test_query.py``). The browser test opens the file in Debian's
``chromium`` through the DevTools protocol, fails on any console error, failed or
outside request, and checks in the screenshot that each chart has data drawn in it
(coloured pixels inside the chart's box). It skips, saying why, without chromium.
Set ``MSEWATCH_REPORT_SCREENSHOT=path.png`` to keep the screenshot.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msewatch import report
from tests.e2e.test_query import (
    SUMMARY,
    latest_panes,
    pooled_worst,
    read_table,
    run_demo,
    synthetic_dead_letter,
    synthetic_metrics,
    write_output,
)

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)  # fmt: skip
PAGE_WIDTH = 1280


@pytest.fixture
def metrics():
    return synthetic_metrics()


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.getbasetemp() / "demo")


@pytest.fixture
def page(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    return report.write_report(out, tmp_path / "report.html").read_text(encoding="utf-8")


def charts(html_text: str) -> list[str]:
    return re.findall(r'<svg class="chart".*?</svg>', html_text, flags=re.S)


def test_report_is_one_offline_file(page):
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r"\b(src|href)=|url\(|@import", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_one_rmse_chart_per_slice_plus_three(page, metrics):
    assert len(charts(page)) == metrics["slice"].nunique() + 3  # coverage, lag, counts
    assert page.count("<figcaption>overall</figcaption>") == 1


def test_slice_charts_are_capped(tmp_path, metrics):
    many = pd.concat([metrics.assign(slice=f"sku={i:02d}") for i in range(14)] + [metrics])
    out = write_output(tmp_path / "out", many, dead=None)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert len(charts(html_text)) == report.MAX_SLICE_CHARTS + 3
    assert f"{many['slice'].nunique() - report.MAX_SLICE_CHARTS} more slices" in html_text


def test_provisional_points_are_hollow_and_dashed(page, metrics):
    latest = latest_panes(metrics)
    overall = latest[latest["slice"] == "overall"]
    lags = ["label_lag_p50_s", "label_lag_p90_s", "label_lag_p99_s"]
    for complete, css in ((False, 'class="pt prov"'), (True, 'class="pt"')):
        rmse = latest[latest["complete"] == complete]["rmse"].notna().sum()
        rows = overall[overall["complete"] == complete]
        expected = rmse + rows["label_coverage"].notna().sum() + rows[lags].notna().sum().sum()
        assert page.count(css) == expected > 0
    assert page.count('fill="#fff"') == page.count('class="pt prov"')  # hollow
    assert 'stroke-dasharray="5 3" class="prov"' in page
    assert "<b>provisional</b>" in page


def test_no_nan_reaches_the_svg(page):
    numbers = re.findall(r'\b(?:d|cx|cy|x|y|x1|x2|y1|y2|width)="([^"]*)"', page)
    assert numbers and not any(re.search(r"nan|inf", n, flags=re.I) for n in numbers)


def test_worst_table_lists_slices_in_order(page, metrics):
    expected = pooled_worst(metrics)
    table = page.split("Worst slices")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>([^<]*)</td>", table) == list(expected["slice"])
    top = expected.iloc[0]
    assert f"{top['rmse']:.4g} [{top['rmse_ci_low']:.4g}, {top['rmse_ci_high']:.4g}]" in table
    assert "complete windows of 2024-03-01 21:00 to 2024-03-02 00:00 UTC" in table


def test_worst_table_says_when_nothing_is_complete(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics.assign(complete=False), dead=None)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert "No complete window with scored pairs yet." in html_text


def test_counts_chart_sums_the_overall_latest_panes(page, metrics):
    latest = latest_panes(metrics)
    overall = latest[latest["slice"] == "overall"]
    bars = charts(page)[-1]
    for label, column in (("NaN/inf predictions", "nan_predictions"), ("NaN/inf labels",
                          "nan_labels"), ("negative label lags", "negative_lags")):  # fmt: skip
        assert re.search(rf"{label}[^<]*</text>.*?>{overall[column].sum():,}</text>", bars)
    assert re.search(r"invalid predictions</text>.*?>3</text>", bars)
    assert re.search(r"dead letter: label unparseable</text>.*?>3</text>", bars)


def test_counts_skip_overlapping_sliding_windows(tmp_path):
    """24 h windows every hour: only windows starting at 00:00 UTC are summed."""
    starts = pd.date_range("2024-03-01", periods=48, freq="h", tz="UTC")
    rows = synthetic_metrics().iloc[[0]].reset_index(drop=True)
    rows = pd.concat([rows] * len(starts), ignore_index=True)
    rows["window_start"], rows["window_end"] = starts, starts + pd.Timedelta(hours=24)
    rows["slice"], rows["nan_predictions"] = "overall", np.arange(len(starts)) + 1
    out = write_output(tmp_path / "out", rows, dead=None)
    bars = charts(report.write_report(out, tmp_path / "r.html").read_text())[-1]
    expected = rows[rows["window_start"].dt.hour == 0]["nan_predictions"].sum()  # 1 + 25
    assert re.search(rf"NaN/inf predictions \(y_pred\)</text>.*?>{expected}</text>", bars)


def test_outcome_table_shows_the_summary(page):
    table = page.split("Outcomes (conservation")[1]
    for kind, counts in SUMMARY["outcomes"].items():
        for outcome, n in counts.items():
            assert re.search(rf"<td>{outcome}</td>.*?<td>{n:,}</td>", table, flags=re.S), kind
    assert table.count("(balanced)") == 2
    assert "&quot;label_ttl&quot;: &quot;7d&quot;" in table.split("<pre>")[1]


def test_outcome_table_flags_a_broken_balance(tmp_path, metrics):
    summary = json.loads(json.dumps(SUMMARY))
    summary["outcomes"]["label"]["joined"] -= 2
    out = write_output(tmp_path / "out", metrics, dead=None, summary=summary)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert '<b class="bad">98 (-2)</b>' in html_text
    assert html_text.count("(balanced)") == 1


def test_report_without_summary_says_so(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, dead=None, summary=None)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert "summary.json not found" in html_text
    assert len(charts(html_text)) == metrics["slice"].nunique() + 3


def _run(argv):
    parser = argparse.ArgumentParser(prog="msewatch report")
    report.add_arguments(parser)
    return report.run(parser.parse_args(argv))


def test_cli_writes_the_report_and_prints_its_path(tmp_path, metrics, capsys):
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    assert _run([str(out), "--out", str(tmp_path / "sub" / "r.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "sub" / "r.html")
    assert (tmp_path / "sub" / "r.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("broken", ["missing", "bad-summary"])
def test_cli_user_mistakes_are_one_line_exit_2(tmp_path, metrics, capsys, broken):
    out = write_output(tmp_path / "out", metrics, dead=None)
    (out / "summary.json").write_text("{not json")
    target = out if broken == "bad-summary" else tmp_path / "missing"
    assert _run([str(target), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert ("not valid JSON" if broken == "bad-summary" else "does not exist") in err


class Chromium:
    """Headless Chromium driven over the DevTools protocol (flat sessions); a context
    manager that stops the browser it started."""

    def __init__(self, profile: Path):
        self.profile = profile
        self.events: list[dict] = []
        self.next_id = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Chromium:
        from websockets.sync.client import connect

        with self._stack as stack:
            proc = subprocess.Popen(
                [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            stack.callback(proc.wait, timeout=30)
            stack.callback(proc.terminate)
            port_file, deadline = self.profile / "DevToolsActivePort", time.monotonic() + 60
            while not (port_file.exists() and len(port_file.read_text().split()) == 2):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port in 60 s")
                time.sleep(0.1)
            port, path = port_file.read_text().split()
            url = f"ws://127.0.0.1:{port}{path}"
            self.ws = stack.enter_context(connect(url, max_size=None, open_timeout=30))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Sends a command and returns its result; events that come first are kept."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        self.ws.send(json.dumps(message | ({"sessionId": session} if session else {})))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, session: str, expression: str):
        reply = self.send("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return reply["result"]["value"]

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.ws.recv(timeout=deadline - time.monotonic())))


BOXES_JS = """[...document.querySelectorAll('svg.chart')].map(e => {
  const r = e.getBoundingClientRect(); return [r.x, r.y + scrollY, r.width, r.height]; })"""


def _is_error(event: dict) -> bool:
    method, params = event.get("method"), event.get("params", {})
    if method in ("Runtime.exceptionThrown", "Network.loadingFailed"):
        return True
    if method == "Runtime.consoleAPICalled":
        return params["type"] in ("error", "assert", "warning")
    return method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning")


def render(html_path: Path, profile: Path) -> dict:
    """Opens ``html_path``; returns its screenshot, chart boxes, errors and requests."""
    with Chromium(profile) as browser:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        attached = browser.send("Target.attachToTarget", targetId=target, flatten=True)
        session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=PAGE_WIDTH,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.send("Page.navigate", session, url=html_path.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        boxes = browser.evaluate(session, BOXES_JS)
        height = browser.evaluate(session, "document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": PAGE_WIDTH, "height": height, "scale": 1}
        shot = browser.send(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True, clip=clip
        )
    events = browser.events
    return {
        "png": base64.b64decode(shot["data"]),
        "boxes": boxes,
        "errors": [json.dumps(e["params"])[:300] for e in events if _is_error(e)],
        "requests": [
            e["params"]["request"]["url"]
            for e in events
            if e.get("method") == "Network.requestWillBeSent"
        ],
    }


def drawn_pixels(png: bytes, boxes: list[list[float]]) -> list[int]:
    """Per chart box: how many pixels are clearly coloured (lines, bands, bars); axes,
    grid and text are grey, so a chart with nothing drawn scores about 0."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    counts = []
    for x, y, w, h in boxes:
        crop = image[int(y) : int(y + h), int(x) : int(x + w)]
        counts.append(int(((crop.max(axis=2) - crop.min(axis=2)) > 60).sum()))
    return counts


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install chromium; CI installs it)"
)


def assert_renders(output_dir, tmp_path, charts: int) -> dict:
    """Writes the report, opens it, and checks every chart is drawn, no error, no fetch."""
    pytest.importorskip("PIL", reason="pillow is needed to read the screenshot")
    pytest.importorskip("websockets", reason="websockets is needed to drive chromium")
    path = report.write_report(output_dir, tmp_path / "report.html")
    page = render(path, tmp_path / "profile")
    assert page["errors"] == []
    assert page["requests"] == [path.resolve().as_uri()]
    assert len(page["boxes"]) == charts
    assert all(w > 300 and h > 100 for _, _, w, h in page["boxes"])
    counts = drawn_pixels(page["png"], page["boxes"])
    assert min(counts) > 150, counts
    return page


@needs_chromium
def test_report_renders_in_chromium(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    assert_renders(out, tmp_path, charts=metrics["slice"].nunique() + 3)


@needs_chromium
@pytest.mark.slow
def test_demo_report_renders_in_chromium(tmp_path, demo):
    out, stats = demo
    slices = read_table(out, "metrics")["slice"].nunique()
    page = assert_renders(out, tmp_path, charts=min(slices, report.MAX_SLICE_CHARTS) + 3)
    if os.environ.get("MSEWATCH_REPORT_SCREENSHOT"):  # how docs/report.png is made
        Path(os.environ["MSEWATCH_REPORT_SCREENSHOT"]).write_bytes(page["png"])
    worst = (tmp_path / "report.html").read_text().split("Worst slices")[1]
    assert re.search(rf"<tr><td>[^<]*{stats.drift_segment}", worst.split("</tr>")[1])


@needs_chromium
def test_chromium_check_catches_a_blank_chart_and_a_console_error(tmp_path):
    """The browser check itself can fail: an empty chart and a bad SVG attribute."""
    pytest.importorskip("PIL", reason="pillow is needed to read the screenshot")
    pytest.importorskip("websockets", reason="websockets is needed to drive chromium")
    blank = '<svg class="chart" width="560" height="210"><rect width="560" height="210" '
    blank += 'fill="#fcfcfc" stroke="#ccc"/><rect x="9" y="9" width="nan" height="9"/></svg>'
    (tmp_path / "blank.html").write_text(f"<!DOCTYPE html><html><body>{blank}</body></html>")
    page = render(tmp_path / "blank.html", tmp_path / "profile")
    assert drawn_pixels(page["png"], page["boxes"]) == [0]
    assert any("attribute width" in error for error in page["errors"]), page["errors"]
