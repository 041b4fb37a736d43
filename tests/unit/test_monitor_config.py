"""The pipeline's config keeps the windows open past the label TTL (one rule, one place)."""

from __future__ import annotations

import pytest

from msewatch.pipelines.monitor import MonitorConfig
from msewatch.transforms.join.transform import JoinConfig
from msewatch.transforms.metrics.transform import MetricsConfig
from msewatch.transforms.metrics.windowing import WindowConfig

DAY_MS = 86400 * 1000


def config(window: WindowConfig, ttl_ms: int = 7 * DAY_MS) -> MonitorConfig:
    return MonitorConfig(
        join=JoinConfig(label_ttl_ms=ttl_ms), metrics=MetricsConfig(window=window), output="out"
    )


def test_a_default_built_config_keeps_its_windows_open_past_the_default_ttl():
    # before: WindowConfig's default lateness was exactly the default TTL (7 d), so an
    # expiry at window end + 7 d fell one instant past the window's close
    built = config(WindowConfig())
    assert built.metrics.window.allowed_lateness_seconds == 7 * 86400 + 1


def test_windows_that_close_at_the_ttl_are_refused():
    with pytest.raises(ValueError, match=r"\(604800 s\) must be .* \(604801 s\).*for_label_ttl"):
        config(WindowConfig(allowed_lateness_seconds=7 * 86400))


@pytest.mark.parametrize(
    "ttl_ms, cluster, lateness_s",
    [
        (1500, False, 3),  # 1.5 s rounds up to 2, + 1 s
        (1500, True, 62),  # 2 + the cluster slack of 60 s
        (3 * DAY_MS, False, 3 * 86400 + 1),
    ],
)
def test_the_factory_derives_the_lateness_from_the_ttl(ttl_ms, cluster, lateness_s):
    window = WindowConfig.for_label_ttl(ttl_ms, cluster=cluster, window_seconds=60)
    assert window.allowed_lateness_seconds == lateness_s
    assert config(window, ttl_ms).metrics.window is window
