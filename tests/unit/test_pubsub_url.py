"""The one Pub/Sub subscription rule: ``pubsub://`` URLs (``msewatch run``) and
``projects/P/subscriptions/S`` paths (:class:`PubSubSource`).

The accepted and refused forms follow GCP's documented rules: a project id is 6 to 30
lowercase letters, digits and hyphens, a letter first and no hyphen last (a legacy
domain-scoped project is ``DOMAIN:ID``); a subscription name is 3 to 255 letters,
digits and ``- _ . ~ + %``, a letter first, not starting with ``goog``.
"""

from __future__ import annotations

import pytest

from msewatch.runners import presets
from msewatch.transforms.io import pubsub

VALID = [
    "projects/my-proj/subscriptions/preds-v1",
    "projects/abcdef/subscriptions/abc",  # shortest project id (6) and name (3)
    "projects/a23456789012345678901234567890/subscriptions/preds",  # 30-character id
    "projects/example.com:my-project/subscriptions/preds",  # domain-scoped project
    "projects/my-proj/subscriptions/A.b_c~d+e%2Ff-G",  # every allowed name character
    "projects/my-proj/subscriptions/g" + "x" * 254,  # 255-character name
    "projects/my-proj/subscriptions/go0gle-preds",  # 'goog' only refused as a prefix
]


@pytest.mark.parametrize("path", VALID)
def test_valid_subscription_paths_are_accepted(path):
    assert pubsub.parse_subscription_path(path) == path


@pytest.mark.parametrize("path", VALID)
def test_a_valid_url_becomes_its_subscription_path(path):
    assert pubsub.parse_subscription_url("pubsub://" + path) == path


def test_pubsub_url_becomes_a_subscription_path():
    url = "pubsub://projects/my-proj/subscriptions/preds-v1"
    assert (
        presets.pubsub_subscriptions(url, url) == ("projects/my-proj/subscriptions/preds-v1",) * 2
    )


@pytest.mark.parametrize(
    "path, message",
    [
        ("projects/p/subscriptions/preds", "not a GCP project id"),  # 1 character
        ("projects/p1x/subscriptions/preds", "not a GCP project id"),  # 3 < 6 characters
        ("projects/abcde/subscriptions/preds", "not a GCP project id"),  # 5 characters
        ("projects/a" + "b" * 30 + "/subscriptions/preds", "not a GCP project id"),  # 31
        ("projects/My-Proj/subscriptions/preds", "not a GCP project id"),  # upper case
        ("projects/1project/subscriptions/preds", "not a GCP project id"),  # digit first
        ("projects/my-proj-/subscriptions/preds", "not a GCP project id"),  # hyphen last
        ("projects/my_proj/subscriptions/preds", "not a GCP project id"),  # underscore
        ("projects/my-proj/subscriptions/ab", "not a Pub/Sub subscription name"),  # 2 chars
        ("projects/my-proj/subscriptions/g" + "x" * 255, "not a Pub/Sub subscription"),
        ("projects/my-proj/subscriptions/1preds", "not a Pub/Sub subscription name"),
        ("projects/my-proj/subscriptions/goog-preds", "not a Pub/Sub subscription name"),
        ("projects/my-proj/subscriptions/pre ds", "not a Pub/Sub subscription name"),
        ("projects/my-proj/subscriptions/pre*ds", "not a Pub/Sub subscription name"),
        ("projects/my-proj/topics/preds", "is a topic"),
        ("projects/my-proj/subscriptions/", "expected projects/PROJECT/subscriptions/NAME"),
        ("projects/my-proj/subscriptions/a/b", "expected projects/PROJECT/subscriptions"),
        ("my-proj/subscriptions/preds", "expected projects/PROJECT/subscriptions/NAME"),
        ("", "expected projects/PROJECT/subscriptions/NAME"),
    ],
)
def test_invalid_subscription_paths_are_refused(path, message):
    with pytest.raises(ValueError, match=message):
        pubsub.parse_subscription_path(path)


@pytest.mark.parametrize(
    "url, message",
    [
        ("pubsub://projects/p1x/topics/preds", "is a topic"),
        ("pubsub://projects/p1x/subscriptions/", "expected pubsub://"),
        ("pubsub://preds", "expected pubsub://"),
        ("pubsub://projects/p1x/subscriptions/preds", "not a GCP project id"),
        ("pubsub://projects/my-proj/subscriptions/goog-x", "not a Pub/Sub subscription name"),
        ("gs://bucket/preds", "not a Pub/Sub URL"),
    ],
)
def test_bad_pubsub_urls_are_refused(url, message):
    with pytest.raises(ValueError, match=message):
        pubsub.parse_subscription_url(url)


@pytest.mark.parametrize(
    "path", ["projects/p1x/subscriptions/preds", "projects/my-proj/subscriptions/goog-x"]
)
def test_pubsub_source_and_run_refuse_the_same_subscriptions(path):
    """PubSubSource (paths) and `msewatch run` (URLs) apply the one rule."""
    good = "projects/my-proj/subscriptions/labels"
    with pytest.raises(ValueError, match="predictions_subscription"):
        pubsub.PubSubSource(path, good)
    with pytest.raises(ValueError, match="not a"):
        presets.pubsub_subscriptions("pubsub://" + path, "pubsub://" + good)


def test_both_inputs_must_be_pubsub_or_both_files():
    preds = "pubsub://projects/my-proj/subscriptions/preds"
    labels = "pubsub://projects/my-proj/subscriptions/labels"
    assert presets.pubsub_subscriptions(preds, labels) == (
        "projects/my-proj/subscriptions/preds",
        "projects/my-proj/subscriptions/labels",
    )
    assert presets.pubsub_subscriptions("p/*.jsonl", "l/*.jsonl") is None
    with pytest.raises(ValueError, match="both"):
        presets.pubsub_subscriptions(preds, "l/*.jsonl")
