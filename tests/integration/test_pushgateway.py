"""``msewatch run --pushgateway``: a bounded run's metrics reach a real Pushgateway, a real
Prometheus scrapes it (``honor_labels``), and two models' pushes do not clobber each other.

The expected RMSE comes from the Parquet files with pandas (the latest pane of each slice's
newest window that passes the label gate, ``test_prometheus.newest_settled``), not from the
collector that built the push.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from msewatch.commands import pushgateway
from msewatch.commands.generate import generate
from tests.integration.test_prometheus import newest_settled
from tests.prometheus_server import instant_query, running_prometheus
from tests.pushgateway_server import running_pushgateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pushed(demo, tmp_path_factory):
    """(output of the CLI run, demo output, Prometheus URL): model=a pushed by ``msewatch
    run --pushgateway``, model=b (the demo's tables) pushed after it."""
    base = tmp_path_factory.mktemp("pushgateway")
    generate(str(base / "s"), predictions=3000, seed=11)
    with running_pushgateway(base) as gateway:
        proc = subprocess.run(
            [sys.executable, "-m", "msewatch", "run",
             "--predictions", str(base / "s" / "predictions.jsonl"),
             "--labels", str(base / "s" / "labels.jsonl"), "--output", str(base / "a"),
             "--slice", "region", "--pushgateway", gateway, "--pushgateway-group", "model=a"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"to {gateway} (job=msewatch, model=a)" in proc.stdout
        demo_out = shutil.copytree(demo[0], base / "b")
        pushgateway.push(gateway, "msewatch", {"model": "b"}, str(demo_out))
        with running_prometheus(base, [gateway.removeprefix("http://")], honor_labels=True) as url:
            yield base / "a", demo_out, url


def _value(url: str, promql: str) -> float | None:
    deadline = time.monotonic() + 20  # a scrape every second: the pushed samples appear
    while True:
        result = instant_query(url, promql)
        if result or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


@pytest.mark.parametrize(("model", "which"), [("a", 0), ("b", 1)])
def test_each_models_rmse_reaches_prometheus_under_its_group(pushed, model, which):
    out, url = pushed[which], pushed[2]
    newest = newest_settled(out).set_index("slice")
    for s in ("overall", newest.drop("overall")["rmse"].idxmax()):
        promql = f'msewatch_rmse{{job="msewatch",model="{model}",slice="{s}"}}'
        assert _value(url, promql) == newest.loc[s, "rmse"], (model, s)
    count = instant_query(url, f'count(msewatch_rmse{{model="{model}"}})')
    assert int(count[0]["value"][1]) == len(newest)


def test_a_pushgateway_that_does_not_answer_is_one_line(tmp_path, demo):
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(OSError, match=r"^cannot reach the Pushgateway at http://127\.0\.0\.1"):
        pushgateway.push(url, "msewatch", {"model": "x"}, str(demo[0]))
