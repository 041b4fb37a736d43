"""``msewatch report``'s page in headless Chromium.

The tests open the file in Debian's ``chromium`` through the DevTools protocol, fail
on any console error, failed or outside request, and check in the screenshot that
each chart has data drawn in it (coloured pixels inside the chart's box). They skip,
saying why, without chromium. Set ``MSEWATCH_REPORT_SCREENSHOT=path.png`` to keep the
demo's screenshot (how ``docs/report.png`` is made). The HTML's content is tested
without a browser in ``tests/e2e/test_report.py``.
"""

from __future__ import annotations

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
import pytest

from msewatch.commands import report
from tests.synthetic_output import (
    SLO_SLICES,
    SLO_SUMMARY,
    read_table,
    synthetic_alerts,
    synthetic_dead_letter,
    synthetic_slo_status,
    write_output,
    write_slo_tables,
)

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)  # fmt: skip
PAGE_WIDTH = 1280


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


def render(html_path: Path, profile: Path, expression: str = "null") -> dict:
    """Opens ``html_path``; returns its screenshot, chart boxes, errors, requests and the
    value of the JavaScript ``expression`` evaluated in the page (``value``)."""
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
        value = browser.evaluate(session, expression)
        height = browser.evaluate(session, "document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": PAGE_WIDTH, "height": height, "scale": 1}
        shot = browser.send(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True, clip=clip
        )
    events = browser.events
    return {
        "png": base64.b64decode(shot["data"]),
        "value": value,
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
def test_slo_report_renders_in_chromium(tmp_path, metrics):
    """With an SLO file: two more charts (budget, burn rates) per SLO and slice, each
    drawn, and the shaded firing periods take no request and raise no error."""
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter(), summary=SLO_SUMMARY)
    write_slo_tables(out, synthetic_alerts(), synthetic_slo_status())
    pairs = sum(len(slices) for slices in SLO_SLICES.values())
    assert_renders(out, tmp_path, charts=metrics["slice"].nunique() + 3 + 2 * pairs)


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


HOSTILE = (
    'region="><img src=x onerror=alert(1)>',
    "region=<a href=http://127.0.0.1:9/>click</a>",
    'region=x" style="position:fixed;inset:0;background:red',
    "region=<div style=position:fixed;inset:0;background:red>cover</div>",
)

DOM_JS = """JSON.stringify({
  img: document.querySelectorAll('img').length,
  a: document.querySelectorAll('a').length,
  styled: [...document.querySelectorAll('body *')].filter(
      e => getComputedStyle(e).position === 'fixed').length,
  text: document.body.innerText,
  labels: [...document.querySelectorAll('svg[aria-label]')].map(e => e.getAttribute('aria-label')),
})"""


@needs_chromium
def test_hostile_slice_names_render_as_text(tmp_path, metrics):
    """Slice names with markup stay text, in element bodies and in SVG attributes."""
    pytest.importorskip("websockets", reason="websockets is needed to drive chromium")
    names = dict(zip(sorted(metrics["slice"].unique())[1:], HOSTILE, strict=False))
    out = write_output(tmp_path / "out", metrics.replace({"slice": names}), None)
    path = report.write_report(out, tmp_path / "report.html")
    with Chromium(tmp_path / "profile") as browser:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)
        session = session["sessionId"]
        browser.send("Page.enable", session)
        browser.send("Page.navigate", session, url=path.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        dom = json.loads(browser.evaluate(session, DOM_JS))
    assert (dom["img"], dom["a"], dom["styled"]) == (0, 0, 0)
    for name in names.values():
        assert name in dom["text"]  # shown as the characters the segment holds
        assert f"RMSE of {name}" in dom["labels"]  # the attribute keeps the whole name
