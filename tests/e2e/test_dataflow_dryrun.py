"""Dataflow, offline: translate the streaming pipeline with ``--dry_run`` and read the graph.

``DataflowRunner`` with ``--dry_run=True`` applies its overrides (Pub/Sub becomes the
native ``pubsub_read``), builds the Runner v2 pipeline proto and the job request, and
returns before staging or calling the service: nothing leaves this machine. The
options come from ``runners/presets.py`` exactly as ``msewatch run`` builds them. The
worker image is given (``--sdk_container_image``) so no sdist is built.
"""

from __future__ import annotations

import json
import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import DebugOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2, standard_window_fns_pb2

from msewatch.pipelines.monitor import MonitorConfig, build
from msewatch.runners import presets
from msewatch.runners.config import monitor_config
from msewatch.transforms.io.pubsub import PubSubSource

PROJECT = "msewatch-prod"
PREDICTIONS_SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/predictions"
LABELS_SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/labels"
IMAGE = "europe-west1-docker.pkg.dev/msewatch-prod/beam/msewatch:0.1.0"
DATAFLOW_ARGS = [
    f"--project={PROJECT}",
    "--region=europe-west1",
    "--temp-location=gs://msewatch-prod-tmp/dataflow",  # dashes, as a user types them
    f"--sdk_container_image={IMAGE}",
]
LABEL_TTL_S = 7 * 24 * 3600
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(window_s: int, every_s: int | None, early_s: int) -> MonitorConfig:
    return monitor_config(
        "gs://msewatch-prod-out/metrics",
        bounded=False,
        runner="DataflowRunner",
        label_ttl_ms=LABEL_TTL_S * 1000,
        window_seconds=window_s,
        every_seconds=every_s,
        early_firing_seconds=early_s,
        slices=["region"],
        shards=16,
        expiry_grid_ms=1,
    )


def _dry_run(config: MonitorConfig):
    flags = presets.pipeline_flags("DataflowRunner", DATAFLOW_ARGS, streaming=True)
    options = beam.options.pipeline_options.PipelineOptions([*flags, "--dry_run=True"])
    p = beam.Pipeline(options=options)
    source = PubSubSource(PREDICTIONS_SUBSCRIPTION, LABELS_SUBSCRIPTION, config.join.segment_keys)
    build(p, config, source)
    return p.run().job


def _transform(pipeline, unique_name: str, urn: str | None = None):
    """The step named ``unique_name`` or, given ``urn``, its one sub-step with that URN."""
    found = [
        t
        for t in pipeline.components.transforms.values()
        if (t.unique_name == unique_name and urn is None)
        or (urn is not None and t.unique_name.startswith(unique_name + "/") and t.spec.urn == urn)
    ]
    assert len(found) == 1, f"no single step {unique_name!r} ({urn}) in the job graph"
    return found[0]


def _strategy(pipeline, transform):
    (pcoll_id,) = transform.outputs.values()
    ws_id = pipeline.components.pcollections[pcoll_id].windowing_strategy_id
    return pipeline.components.windowing_strategies[ws_id]


@pytest.fixture(scope="module")
def fixed_job():
    return _dry_run(_config(window_s=3600, every_s=None, early_s=60))


def test_job_is_streaming_on_runner_v2_with_streaming_engine(fixed_job):
    job = fixed_job
    assert job.proto.type_.name == "JOB_TYPE_STREAMING"
    debug = job.options.view_as(DebugOptions)  # the options Dataflow would receive
    for experiment in ("use_runner_v2", "enable_streaming_engine", "enable_windmill_service"):
        assert debug.lookup_experiment(experiment), experiment


def test_pubsub_reads_are_native_with_attributes(fixed_job):
    pipeline = fixed_job.proto_pipeline
    reads = {}
    for t in pipeline.components.transforms.values():
        if t.spec.urn == common_urns.composites.PUBSUB_READ.urn:
            from apache_beam.portability.api import beam_runner_api_pb2 as pb

            payload = pb.PubSubReadPayload.FromString(t.spec.payload)
            reads[payload.subscription] = payload.with_attributes
    assert reads == {PREDICTIONS_SUBSCRIPTION: True, LABELS_SUBSCRIPTION: True}


def test_stateful_join_step_keeps_state_and_an_event_time_timer(fixed_job):
    pipeline = fixed_job.proto_pipeline
    join = _transform(pipeline, "Join/JoinShards", common_urns.primitives.PAR_DO.urn)
    payload = beam_runner_api_pb2.ParDoPayload.FromString(join.spec.payload)
    cells = {"pending_predictions", "waiting_labels", "tombstones"}
    assert set(payload.state_specs) == cells
    assert all(payload.state_specs[c].HasField("read_modify_write_spec") for c in cells)
    assert set(payload.timer_family_specs) == {"ts-expiry"}  # Beam prefixes timer ids
    assert payload.timer_family_specs["ts-expiry"].time_domain == (
        beam_runner_api_pb2.TimeDomain.EVENT_TIME
    )
    # the join is keyed and runs in the global window (state is per key *and* window)
    (main_input,) = [pid for tag, pid in join.inputs.items() if tag not in payload.side_inputs]
    ws_id = pipeline.components.pcollections[main_input].windowing_strategy_id
    window_fn = pipeline.components.windowing_strategies[ws_id].window_fn
    assert window_fn.urn == common_urns.global_windows.urn


def test_pubsub_batching_is_keyed_with_a_processing_time_buffer(fixed_job):
    pipeline = fixed_job.proto_pipeline
    for side in ("ReadPredictions", "ReadLabels"):
        # GroupIntoBatches keeps its URN, so Dataflow can run its native version.
        batch = _transform(pipeline, f"Read/{side}/Batch")
        assert batch.spec.urn == common_urns.group_into_batches_components.GROUP_INTO_BATCHES.urn
        spec = beam_runner_api_pb2.GroupIntoBatchesPayload.FromString(batch.spec.payload)
        assert (spec.batch_size, spec.max_buffering_duration_millis) == (2000, 1000)
        batch = _transform(pipeline, f"Read/{side}/Batch", common_urns.primitives.PAR_DO.urn)
        payload = beam_runner_api_pb2.ParDoPayload.FromString(batch.spec.payload)
        domains = {k: v.time_domain for k, v in payload.timer_family_specs.items()}
        assert domains["ts-buffering_end"] == beam_runner_api_pb2.TimeDomain.PROCESSING_TIME


def _trigger_summary(trigger) -> dict:
    after_end = trigger.after_end_of_window
    early = after_end.early_firings.after_processing_time.timestamp_transforms
    return {
        "kind": trigger.WhichOneof("trigger"),
        "early_delay_ms": [t.delay.delay_millis for t in early],
        "late_count": after_end.late_firings.element_count.element_count,
    }


def test_metrics_windows_are_fixed_with_early_on_time_and_late_panes(fixed_job):
    pipeline = fixed_job.proto_pipeline
    strategy = _strategy(pipeline, _transform(pipeline, "Metrics/Window/AssignWindows"))
    assert strategy.window_fn.urn == common_urns.fixed_windows.urn
    fixed = standard_window_fns_pb2.FixedWindowsPayload.FromString(strategy.window_fn.payload)
    assert fixed.size.seconds == 3600
    assert _trigger_summary(strategy.trigger) == {
        "kind": "after_end_of_window",
        "early_delay_ms": [60_000],
        "late_count": 1,
    }
    # Panes fire DISCARDING; AccumulatePanes keeps each window's running total in state.
    assert strategy.accumulation_mode == beam_runner_api_pb2.AccumulationMode.DISCARDING
    # a cluster runner: label_ttl + 60 s (README, "Time, lateness and panes")
    assert strategy.allowed_lateness == (LABEL_TTL_S + 60) * 1000
    step = _transform(pipeline, "Metrics/AccumulatePanes")
    assert step.spec.urn == common_urns.primitives.PAR_DO.urn
    payload = beam_runner_api_pb2.ParDoPayload.FromString(step.spec.payload)
    assert set(payload.state_specs) == {"total"}


def test_sliding_windows_are_translated_as_configured():
    job = _dry_run(_config(window_s=24 * 3600, every_s=3600, early_s=300))
    pipeline = job.proto_pipeline
    strategy = _strategy(pipeline, _transform(pipeline, "Metrics/Window/AssignWindows"))
    assert strategy.window_fn.urn == common_urns.sliding_windows.urn
    sliding = standard_window_fns_pb2.SlidingWindowsPayload.FromString(strategy.window_fn.payload)
    assert (sliding.size.seconds, sliding.period.seconds) == (24 * 3600, 3600)
    assert _trigger_summary(strategy.trigger)["early_delay_ms"] == [300_000]


def test_workers_use_the_given_container_image(fixed_job):
    pipeline = fixed_job.proto_pipeline
    images = set()
    for env in pipeline.components.environments.values():
        if env.urn == common_urns.environments.DOCKER.urn:
            images.add(beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image)
    assert images == {IMAGE}


@pytest.mark.parametrize("missing", ["--project", "--region", "--temp_location"])
def test_dataflow_preset_names_a_missing_required_option(missing):
    args = [a for a in presets.normalize_beam_args(DATAFLOW_ARGS) if not a.startswith(missing)]
    with pytest.raises(ValueError, match=f"DataflowRunner needs {missing}$"):
        presets.pipeline_flags("DataflowRunner", args, streaming=True)


@pytest.mark.parametrize("temp", ["/tmp/x", "gs://msewatch-prod-tmp/dataflow\n"])
def test_dataflow_preset_wants_a_gcs_temp_location(temp):
    # a final newline: "$" matched before it
    args = [*DATAFLOW_ARGS[:2], f"--temp_location={temp}", DATAFLOW_ARGS[3]]
    with pytest.raises(ValueError, match="gs://"):
        presets.pipeline_flags("DataflowRunner", args, streaming=False)


def test_dataflow_preset_adds_streaming_flags_only_for_pubsub():
    streaming = presets.preset_flags("DataflowRunner", DATAFLOW_ARGS, streaming=True)
    bounded = presets.preset_flags("DataflowRunner", DATAFLOW_ARGS, streaming=False)
    assert streaming == ["--streaming", "--enable_streaming_engine"]
    assert bounded == []  # the image carries the code: nothing to stage


def test_without_an_image_the_package_is_staged_from_pyproject(monkeypatch):
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name: object())
    flags = presets.preset_flags("DataflowRunner", DATAFLOW_ARGS[:3], streaming=False)
    assert flags == [f"--setup_file={os.path.join(REPO, 'pyproject.toml')}"]


def test_flex_template_parameters_become_msewatch_run_options():
    from google.cloud.dataflow_v1beta3.types import TemplateMetadata

    from msewatch.cli import build_parser

    with open(os.path.join(REPO, "runners", "flex_template", "metadata.json")) as f:
        text = f.read()
    metadata = TemplateMetadata.from_json(text)  # field names and enums as the API wants
    names = [p.name for p in metadata.parameters]
    assert set(names) == set(presets.TEMPLATE_PARAMETERS)
    assert metadata.streaming
    sample = {
        "predictions": "pubsub://projects/p/subscriptions/preds",
        "labels": "pubsub://projects/p/subscriptions/labels",
        "output": "gs://bucket/out",
        "window": "1h",
        "every": "1h",
        "label_ttl": "7d",
        "orphan_ttl": "1h",
        "slices": "region;model_version,region",
        "max_slice_values": "50",
        "huber_delta": "2.5",
        "shards": "32",
        "early_firing": "120",
    }
    assert set(sample) == set(names)
    argv = presets.flex_template_argv([f"--{k}={v}" for k, v in sample.items()] + ["--project=p"])
    args, rest = build_parser().parse_known_args(argv)
    assert rest == ["--project=p"]  # Beam options pass through
    assert args.slice == ["region", "model_version,region"]
    assert (args.window, args.label_ttl, args.runner) == (3600, 7 * 86400 * 1000, "DataflowRunner")
    assert json.loads(text)["parameters"][0]["name"] == "predictions"
