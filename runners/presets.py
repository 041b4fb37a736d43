"""Runner presets: the Beam pipeline options each supported runner needs.

:func:`pipeline_flags` turns ``msewatch run``'s runner name and the Beam options it
did not recognize into the argv of ``PipelineOptions``: ``--runner``, the user's
options (``--temp-location`` spelled with dashes is accepted for ``--temp_location``),
then what the preset adds. Missing required options raise ``ValueError`` naming them.
The user's own value of an option always wins; a preset only fills gaps.

=================  =========================  ================================  =========
runner             required                   added                             code
=================  =========================  ================================  =========
DirectRunner       --                         runs FnApiRunner (files) or       this
                                              BundleBasedDirectRunner with      process
                                              ``--streaming`` (Pub/Sub)
PortableRunner     ``--job_endpoint``         ``--streaming`` (Pub/Sub),        staged
                                              ``--setup_file`` (see below)      sdist or
FlinkRunner        ``--flink_master``         same as PortableRunner            image
DataflowRunner     ``--project``,             ``--streaming`` and               staged
                   ``--region``,              ``--enable_streaming_engine``     sdist or
                   ``--temp_location``        (Pub/Sub), ``--setup_file``       image
                   (``gs://``)
=================  =========================  ================================  =========

How the code reaches the workers: msewatch is a package, so workers must install it.

* LOOPBACK and EXTERNAL environments (``--environment_type``) run the SDK worker in
  the launching process or in a worker pool you start, where msewatch is installed:
  nothing is staged.
* ``--sdk_container_image`` (or ``--environment_config`` with DOCKER): an image with
  msewatch installed (``runners/flex_template/Dockerfile`` builds one). Production
  choice: no install at worker start, no PyPI access needed by workers.
* Otherwise the preset adds ``--setup_file=<repo>/pyproject.toml``: Beam 2.77 builds
  an sdist with ``python -m build --sdist --no-isolation`` (the ``build`` package
  must be installed where you launch; no ``setup.py`` is needed) and stages it; each
  worker container pip-installs it and its dependencies at start-up.

Pub/Sub: Beam's Python Pub/Sub read runs on Dataflow and the DirectRunner only;
Flink and other portable runners read it through a Java expansion service
(:func:`check_pubsub_runner`).

Streaming state: Dataflow keeps the join's state and timers in Streaming Engine
(Beam adds the ``enable_streaming_engine`` and ``enable_windmill_service``
experiments and Runner v2 by itself; no other experiment is needed). Flink keeps
them in its configured state backend; checkpointing and the backend are cluster
settings (``execution.checkpointing.interval``, ``state.backend.type: rocksdb``);
``runners/flink.py`` passes the cluster's interval to a streaming job. Java-only Flink
options (``--checkpointing_interval``, ``--state_backend``, ...) are accepted and reach
the job server, which describes them to the Python FlinkRunner.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    SetupOptions,
)

from msewatch.transforms.io.kafka import KafkaTopic, is_kafka_url, parse_kafka_url
from msewatch.transforms.io.pubsub import is_subscription_url, parse_subscription_url

# What Beam's validator accepts; anything else makes it fall back to creating a default
# bucket (a network call) instead of failing.
_GCS_PATH = re.compile(r"gs://[a-z0-9][-_a-z0-9.]+[a-z0-9]/.+")  # fullmatch: no final "\n"
# Flink options that only the Java side knows (FlinkPipelineOptions).
_FLINK_JAVA_OPTIONS = (
    "checkpointing_interval",
    "checkpointing_mode",
    "state_backend",
    "state_backend_storage_path",
    "externalized_checkpoints_enabled",
)
_STAGING_OPTIONS = ("setup_file", "extra_packages", "requirements_file")


class FlinkJavaOptions(PipelineOptions):
    """The Java-only FlinkPipelineOptions msewatch sets or passes through, declared so
    that Beam's Python parser knows them: without this every Flink streaming run warned
    "Unknown pipeline options received: --checkpointing_interval=..." (twice) for the
    option msewatch adds itself. Values stay strings, as Beam passed them before, for
    the job server to parse."""

    @classmethod
    def _add_argparse_args(cls, parser):
        for name in _FLINK_JAVA_OPTIONS:
            parser.add_argument(f"--{name}", help="FlinkRunner (Java side): passed through")


@dataclasses.dataclass(frozen=True)
class RunnerPreset:
    """What one runner needs.

    Attributes:
        name: the runner's Beam name.
        required: Beam options that must be given.
        stages_code: whether workers outside this process run the code (so it must be
            staged or baked into an image).
        summary: one line for help texts.
    """

    name: str
    required: tuple[str, ...]
    stages_code: bool
    summary: str


PRESETS = {
    p.name: p
    for p in (
        RunnerPreset("DirectRunner", (), False, "local, in this process (default)"),
        RunnerPreset(
            "PortableRunner", ("job_endpoint",), True, "any Beam job service (Flink, Spark, ...)"
        ),
        RunnerPreset("FlinkRunner", ("flink_master",), True, "an Apache Flink cluster"),
        RunnerPreset(
            "DataflowRunner",
            ("project", "region", "temp_location"),
            True,
            "Google Cloud Dataflow",
        ),
    )
}
RUNNERS = tuple(PRESETS)
_ALIASES = {name.lower().removesuffix("runner"): name for name in RUNNERS}


def runner_name(runner: str) -> str:
    """Canonical preset name: ``flink``, ``FlinkRunner`` and ``flinkrunner`` all work.

    Raises:
        ValueError: not one of the supported runners.
    """
    key = (runner or "").strip().lower().removesuffix("runner")
    if key not in _ALIASES:
        raise ValueError(f"--runner must be one of {', '.join(RUNNERS)}; got {runner!r}")
    return _ALIASES[key]


def normalize_beam_args(beam_args: Sequence[str]) -> list[str]:
    """``--temp-location=x`` -> ``--temp_location=x``: Beam spells options with ``_``."""
    out = []
    for arg in beam_args:
        if arg.startswith("--") and len(arg) > 2:
            name, sep, value = arg[2:].partition("=")
            arg = "--" + name.replace("-", "_") + sep + value
        out.append(arg)
    return out


def check_known_options(beam_args: Sequence[str]) -> None:
    """Refuses options that are neither msewatch's nor a Beam pipeline option.

    Beam itself only logs a warning for an unknown option and goes on with defaults,
    so a misspelt ``--windw 2h`` would run with the default window. The parser is
    built like ``PipelineOptions.get_all_options`` builds it: from every
    ``PipelineOptions`` subclass loaded (the runners' own options included).

    Raises:
        ValueError: the first unknown option, and what to do.
    """
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(normalize_beam_args(beam_args))
    if unknown:
        first = unknown[0]
        what = "option" if first.startswith("-") else "argument"
        raise ValueError(
            f"unknown {what} {first!r}: it is neither an msewatch run option nor a Beam "
            "pipeline option (see `msewatch run --help`)"
        )


def given_options(args: Sequence[str]) -> set[str]:
    """Names of the options present in ``args`` (normalized), whatever their value."""
    return {a[2:].partition("=")[0] for a in args if a.startswith("--") and len(a) > 2}


def project_root() -> str | None:
    """The msewatch source tree (with pyproject.toml) this code runs from, if any."""
    import msewatch

    root = os.path.dirname(os.path.dirname(os.path.abspath(msewatch.__file__)))
    pyproject = os.path.join(root, "pyproject.toml")
    if not os.path.isfile(pyproject):
        return None
    with open(pyproject, encoding="utf-8") as f:
        return root if re.search(r'^name\s*=\s*"msewatch"', f.read(), re.MULTILINE) else None


def _staging_flags(runner: str, options: PipelineOptions, given: set[str]) -> list[str]:
    """``--setup_file`` when workers need the code and nothing else brings it."""
    env = (options.view_as(PortableOptions).environment_type or "DOCKER").upper()
    if env in ("LOOPBACK", "EXTERNAL") or given & set(_STAGING_OPTIONS):
        return []
    if "sdk_container_image" in given or ("environment_config" in given and env == "DOCKER"):
        return []
    root = project_root()
    if root is None:
        raise ValueError(
            f"{runner} workers need the msewatch code: pass --sdk_container_image=IMAGE "
            "(an image with msewatch installed, see runners/flex_template/Dockerfile), "
            "--extra_package=msewatch-VERSION.tar.gz, or run from a source checkout"
        )
    if importlib.util.find_spec("build") is None:
        raise ValueError(
            "staging msewatch for the workers builds an sdist with the 'build' package: "
            "pip install build, or pass --sdk_container_image=IMAGE"
        )
    return [f"--setup_file={os.path.join(root, 'pyproject.toml')}"]


def _check_required(preset: RunnerPreset, given: set[str]) -> None:
    missing = [f"--{name}" for name in preset.required if name not in given]
    if missing:
        raise ValueError(f"{preset.name} needs {', '.join(missing)}")


def preset_flags(runner: str, beam_args: Sequence[str], *, streaming: bool) -> list[str]:
    """The options the preset adds to ``beam_args`` for ``runner``.

    Args:
        runner: a supported runner name (see :func:`runner_name`).
        beam_args: the user's Beam options.
        streaming: the source is unbounded (Pub/Sub).

    Returns:
        Flags to append (never one the user already set).

    Raises:
        ValueError: unknown runner, a required option missing, or an option the
            runner would silently ignore.
    """
    preset = PRESETS[runner_name(runner)]
    args = normalize_beam_args(beam_args)
    options = PipelineOptions(args)
    given = given_options(args)
    _check_required(preset, given)
    flags = []
    if streaming and "streaming" not in given:
        flags.append("--streaming")
    if preset.name == "DataflowRunner":
        temp = options.view_as(GoogleCloudOptions).temp_location or ""
        if not _GCS_PATH.fullmatch(temp):
            raise ValueError(f"DataflowRunner needs --temp_location=gs://BUCKET/PATH; got {temp!r}")
        if streaming and "enable_streaming_engine" not in given:
            flags.append("--enable_streaming_engine")
    if preset.stages_code:
        flags += _staging_flags(preset.name, options, given)
    return flags


def pipeline_flags(runner: str, beam_args: Sequence[str], *, streaming: bool) -> list[str]:
    """The whole argv of ``PipelineOptions`` for ``msewatch run`` (see the module doc).

    Raises:
        ValueError: as :func:`preset_flags`.
    """
    name = runner_name(runner)
    args = [a for a in normalize_beam_args(beam_args) if not a.startswith("--runner")]
    beam_runner = name
    if name == "DirectRunner":
        beam_runner = "BundleBasedDirectRunner" if streaming else "FnApiRunner"
    return [f"--runner={beam_runner}", *args, *preset_flags(name, args, streaming=streaming)]


def pipeline_options(runner: str, beam_args: Sequence[str], *, streaming: bool):
    """``PipelineOptions`` from :func:`pipeline_flags` (the code lives in a package)."""
    options = PipelineOptions(pipeline_flags(runner, beam_args, streaming=streaming))
    options.view_as(SetupOptions).save_main_session = False
    return options


def check_pubsub_runner(runner: str, expansion_service: str | None) -> None:
    """Refuses a Pub/Sub read the runner cannot execute.

    Beam's Python Pub/Sub read runs only on Dataflow and the DirectRunner; portable
    runners (Flink, a job service) need Java's PubsubIO through an expansion service.

    Raises:
        ValueError: a portable runner without ``expansion_service``.
    """
    name = runner_name(runner)
    if name in ("PortableRunner", "FlinkRunner") and not expansion_service:
        raise ValueError(
            f"{name} cannot run Beam's Python Pub/Sub read (only Dataflow and the "
            "DirectRunner can): start a Java expansion service with Beam's GCP IO and "
            "pass --pubsub-expansion-service HOST:PORT"
        )


def pubsub_subscriptions(predictions: str, labels: str) -> tuple[str, str] | None:
    """Both subscriptions when both inputs are Pub/Sub URLs, None when both are files.

    Raises:
        ValueError: one input is Pub/Sub and the other is not, or a URL is malformed
            (:func:`~msewatch.transforms.io.pubsub.parse_subscription_url`).
    """
    if _input_kind(predictions, labels) != "pubsub":
        return None
    return parse_subscription_url(predictions), parse_subscription_url(labels)


def kafka_topics(predictions: str, labels: str) -> tuple[KafkaTopic, KafkaTopic] | None:
    """Both topics when both inputs are ``kafka://`` URLs, None when both are files.

    Raises:
        ValueError: the inputs are of two kinds, or a URL is malformed
            (:func:`~msewatch.transforms.io.kafka.parse_kafka_url`).
    """
    if _input_kind(predictions, labels) != "kafka":
        return None
    return parse_kafka_url(predictions), parse_kafka_url(labels)


def _input_kind(predictions: str, labels: str) -> str:
    """``files``, ``pubsub`` or ``kafka``: what both inputs are (one kind for both)."""

    def kind(text: str) -> str:
        if is_subscription_url(text):
            return "pubsub"
        return "kafka" if is_kafka_url(text) else "files"

    kinds = {kind(predictions), kind(labels)}
    if len(kinds) > 1:
        raise ValueError(
            "--predictions and --labels must be of one kind: both pubsub:// subscriptions, "
            "both kafka:// topics or both files"
        )
    return kinds.pop()


def check_kafka_runner(runner: str) -> None:
    """Refuses a Kafka read on a runner that cannot run Beam's Java KafkaIO.

    Raises:
        ValueError: the DirectRunner (the Python DirectRunner runs no Java transform).
    """
    if runner_name(runner) == "DirectRunner":
        raise ValueError(
            "kafka:// inputs are read by Beam's Java KafkaIO, which the DirectRunner cannot "
            "run: pass --runner FlinkRunner --flink-master HOST:PORT (see the README, Flink)"
        )


# Flex Template parameters (runners/flex_template/metadata.json) -> `msewatch run`
# options. The template launcher passes each parameter as --name=value; Beam options
# (--project, --region, --temp_location, --sdk_container_image, ...) pass through.
TEMPLATE_PARAMETERS = {
    "predictions": "--predictions",
    "labels": "--labels",
    "output": "--output",
    "window": "--window",
    "every": "--every",
    "label_ttl": "--label-ttl",
    "orphan_ttl": "--orphan-ttl",
    "slices": "--slice",
    "max_slice_values": "--max-slice-values",
    "huber_delta": "--huber-delta",
    "shards": "--shards",
    "early_firing": "--early-firing",
}


def flex_template_argv(argv: Sequence[str]) -> list[str]:
    """The ``msewatch run`` argv for the Flex Template launcher's ``--name=value`` args.

    ``slices`` holds slice specs separated by ``;`` (``region;model_version,region``)
    and becomes one ``--slice`` each; other parameters are renamed; the rest (Beam
    options) is kept as it is.
    """
    out = ["run", "--runner=DataflowRunner"]
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep or name not in TEMPLATE_PARAMETERS:
            if not arg.startswith("--runner"):
                out.append(arg)
            continue
        if name == "slices":
            out += [f"--slice={spec.strip()}" for spec in value.split(";") if spec.strip()]
        else:
            out.append(f"{TEMPLATE_PARAMETERS[name]}={value}")
    return out
